"""The statement store: every history entry the etcd tier relays out of etcd, kept for good in PostgreSQL.

PostgreSQL runs under Patroni (ops/patroni.py): the primary is the member Patroni's /cluster names leader, never
merely one that takes writes (a member whose Patroni died keeps taking them: ../docs/data-tier.md#statements).
Each bank (ETCD_PREFIX) has a schema of its own: entries, unique by (account, seq), and relay_fence, the highest
relay token that wrote. An insert is acknowledged only once the synchronous standby has it too; a commit that
times out, or that PostgreSQL says was cancelled while waiting for the standby, is StatementsUnavailable: its
outcome unknown, its entries still in etcd, to be sent again.
"""
import hashlib
import queue
import re
import threading
import time

import psycopg
import requests

DATABASE, USER = "bank", "bank"  # the statement store's database, and its user (make certs' statements.pem's name)
COLUMNS = ("account", "seq", "kind", "cents", "balance", "counterparty", "operation", "key", "at")
CONNECT_TIMEOUT_SECONDS = 2
STATEMENT_TIMEOUT_MS = 5_000    # a read or insert, bounded by PostgreSQL itself (not the wait for the standby)
READ_CONNECTIONS = 4            # statement reads at once; a read waits at most the timeout for one of them
PRIMARY_KNOWN_SECONDS = 1.0     # Patroni's word on the primary stands for this long
_SYNC_CANCELLED = "synchronous replication"     # PostgreSQL's warning when a commit stopped waiting for it


class StatementsUnavailable(Exception):
    """The statement store did not answer, or not durably: nothing read, and what was sent may or may not be kept."""


class StatementRefused(Exception):
    """An entry is kept already with other contents, or PostgreSQL refuses it for good: it is never overwritten,
    and the relay stops (an alarm)."""


class StaleRelay(Exception):
    """A relay with a higher token wrote since: this one was replaced."""


class StatementStore:
    """Connections to the primary of a Patroni cluster; tls: TlsFiles with the client certificate of user bank."""

    def __init__(self, patroni_urls, tls, bank_prefix, timeout):
        self._patroni_urls, self._tls, self._timeout = list(patroni_urls), tls, timeout
        # The bank's own: readable, and told apart by a hash of the whole prefix (no two banks share it).
        self.schema = (f"bank_{re.sub(r'[^a-z0-9_]', '_', bank_prefix.lower())[:32]}_"
                       f"{hashlib.sha256(bank_prefix.encode()).hexdigest()[:12]}")
        self._readers = queue.LifoQueue(READ_CONNECTIONS)
        self._reader_slots = threading.BoundedSemaphore(READ_CONNECTIONS)
        self._schema_made = False
        self._primary = (None, 0.0)         # ((host, port), time.monotonic() when Patroni named it)

    # ---- the relay's side --------------------------------------------------------------------------------

    def connect(self):
        """A new connection to the primary, with the schema made; StatementsUnavailable if there is none now."""
        connection = self._connect()
        if not self._schema_made:
            try:
                with connection.transaction():
                    connection.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    connection.execute(f'CREATE TABLE IF NOT EXISTS "{self.schema}".entries ('
                                       "account text NOT NULL, seq bigint NOT NULL, kind text NOT NULL, "
                                       "cents numeric(21) NOT NULL, balance numeric(21) NOT NULL, counterparty text, "
                                       "operation text, key text, at bigint NOT NULL, PRIMARY KEY (account, seq))")
                    connection.execute(f'CREATE TABLE IF NOT EXISTS "{self.schema}".relay_fence ('
                                       "one int PRIMARY KEY CHECK (one = 1), token bigint NOT NULL)")
                    connection.execute(f'INSERT INTO "{self.schema}".relay_fence VALUES (1, 0) '
                                       "ON CONFLICT DO NOTHING")
            except psycopg.errors.UniqueViolation:
                pass                # another data server made it at the same moment
            except psycopg.Error as error:
                connection.close()
                raise StatementsUnavailable(f"the statement store could not be prepared: {error}") from None
            self._schema_made = True
        return connection

    def keep(self, connection, entries, token):
        """Insert entries, each (account, seq) once, in one transaction acknowledged by the synchronous standby,
        fenced by the relay's token. StatementRefused if one is kept with other contents (nothing is written),
        StaleRelay if a newer relay wrote, StatementsUnavailable if the outcome is unknown."""
        notices = []

        def heard(notice):
            notices.append(notice.message_primary or "")

        connection.add_notice_handler(heard)
        table = f'"{self.schema}".entries'
        rows = [tuple(entry[column] for column in COLUMNS) for entry in entries]
        try:
            with connection.transaction():
                fenced = connection.execute(f'UPDATE "{self.schema}".relay_fence SET token = %s WHERE token <= %s',
                                            (token, token)).rowcount
                if not fenced:
                    raise StaleRelay(f"a relay with a token above {token} wrote to the statement store")
                with connection.cursor() as cursor:
                    cursor.executemany(f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES "
                                       f"({', '.join(['%s'] * len(COLUMNS))}) ON CONFLICT DO NOTHING", rows)
                keys = [(row[0], row[1]) for row in rows]
                kept = connection.execute(
                    f"SELECT {', '.join(COLUMNS)} FROM {table} WHERE (account, seq) IN "
                    f"(SELECT * FROM unnest(%s::text[], %s::bigint[]))",
                    ([key[0] for key in keys], [key[1] for key in keys])).fetchall()
                differing = sorted(set(_as_ints(kept)) - set(rows))
                if differing:
                    raise StatementRefused(f"the statement store keeps {len(differing)} entries with other contents,"
                                            f" first {differing[0][0]} seq {differing[0][1]}; none was overwritten")
        except (StaleRelay, StatementRefused):
            raise
        except psycopg.errors.DataError as error:
            raise StatementRefused(f"the statement store refuses the entries for good: {error}") from None
        except psycopg.Error as error:
            raise StatementsUnavailable(f"the statement store did not acknowledge the entries: {error}") from None
        finally:
            connection.remove_notice_handler(heard)
        if any(_SYNC_CANCELLED in notice for notice in notices):
            # Committed on the primary alone: a failover could lose it. Kept in etcd, sent again.
            raise StatementsUnavailable(f"the statement store's commit was not replicated: {notices}")

    # ---- statement reads ---------------------------------------------------------------------------------

    def page(self, account, before, limit):
        """Up to limit kept entries of account with a seq below before (None: any), newest first."""
        if not self._reader_slots.acquire(timeout=self._timeout):
            raise StatementsUnavailable("every statement store connection is busy")
        connection = None
        try:
            try:
                connection = self._readers.get_nowait()
            except queue.Empty:
                connection = None
            if connection is not None and not self.on_primary(connection):
                connection.close()
                connection = None
            if connection is None:
                connection = self._connect()
            try:
                rows = connection.execute(
                    f'SELECT {", ".join(COLUMNS)} FROM "{self.schema}".entries WHERE account = %s AND seq < %s '
                    "ORDER BY seq DESC LIMIT %s", (account, before or 2 ** 62, limit)).fetchall()
                connection.rollback()
            except psycopg.errors.UndefinedTable:
                connection.rollback()
                rows = []               # nothing was ever relayed
            except psycopg.Error as error:
                connection.close()
                connection = None
                raise StatementsUnavailable(f"the statement store could not be read: {error}") from None
            return [dict(zip(COLUMNS, row)) for row in _as_ints(rows)]
        finally:
            if connection is not None:
                self._readers.put_nowait(connection)
            self._reader_slots.release()

    def close(self):
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                return

    # ---- finding the primary -----------------------------------------------------------------------------

    def primary(self):
        """(host, port) of the member Patroni names leader, as the first member that answers sees it (asked at
        most once in PRIMARY_KNOWN_SECONDS)."""
        known, asked_at = self._primary
        if known is not None and time.monotonic() - asked_at < PRIMARY_KNOWN_SECONDS:
            return known
        for url in self._patroni_urls:
            try:
                view = requests.get(f"{url}/cluster", timeout=self._timeout, verify=self._tls.ca or True).json()
                leader = next(((m["host"], int(m["port"])) for m in view["members"]
                               if m.get("role") == "leader" and m.get("state") == "running"), None)
            except (requests.RequestException, ValueError, KeyError, TypeError, AttributeError):
                continue
            if leader is not None:
                self._primary = (leader, time.monotonic())
                return leader
        raise StatementsUnavailable("no statement store member names a running primary")

    def on_primary(self, connection):
        """Whether connection is to the member Patroni names leader now: one to a former primary (its Patroni
        gone, its PostgreSQL not) would read a statement without what was kept since, and wait on its commits."""
        return (connection.info.host, connection.info.port) == self.primary()

    def cancel(self, connection):
        """Stop a statement waiting on connection (a commit waiting for the standby): its outcome stays unknown,
        and PostgreSQL's warning that it stopped waiting makes keep() say so."""
        try:
            connection.cancel_safe(timeout=self._timeout)
        except (psycopg.Error, OSError):
            pass

    def _connect(self):
        host, port = self.primary()
        try:
            return psycopg.connect(
                host=host, port=port, dbname=DATABASE, user=USER, sslmode="verify-full", sslrootcert=self._tls.ca,
                sslcert=self._tls.cert, sslkey=self._tls.key, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                # A primary that lost its place takes no writes: a connection to it fails rather than writes.
                target_session_attrs="read-write", tcp_user_timeout=int(self._timeout * 1000),
                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}")
        except psycopg.Error as error:
            raise StatementsUnavailable(f"the statement store's primary {host}:{port} refused: {error}") from None


_MONEY = (COLUMNS.index("cents"), COLUMNS.index("balance"))   # numeric in PostgreSQL: 20 digits, as the data tier's


def _as_ints(rows):
    """Rows as read, their money columns as ints: money is integer cents."""
    return [tuple(int(value) if index in _MONEY else value for index, value in enumerate(row)) for row in rows]

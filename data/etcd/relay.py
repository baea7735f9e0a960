"""The relay: moves history entries out of etcd into the statement store (data/statements/postgres.py).

A commit writes its entries in its own etcd transaction (h/{account}/{seq}); one relay across all data servers
then copies them, a batch at a time in key order, into PostgreSQL, and deletes a batch from etcd only once
PostgreSQL has acknowledged it durably. Keys under ETCD_PREFIX:

  r/relay      the relaying data server, under a lease of RELAY_LEASE_SECONDS it moves to a new one while it works;
               its create revision is the relay's token
  r/progress   {"lag_ms", "at_ms", "moved"} of the last batch moved: what /health shows on every data server
  r/alarm      why relaying stopped: an entry the statement store keeps with other contents. No relay moves
               anything while it is there; an operator who has looked into it deletes it

A data server whose relay dies (its lease ends) is replaced within RELAY_LEASE_SECONDS, and the new relay copies the
batch again: PostgreSQL keeps each (account, seq) once. A relay paused past its lease is fenced twice when it wakes:
PostgreSQL takes no batch from a token below the last one it took, and etcd deletes nothing unless r/relay is
still the relay's own. Entries of an account leave etcd oldest first, so etcd holds each account's newest entries
and the statement store the older ones (store.py's history() reads across the two).
"""
import json
import logging
import threading
import time
from typing import NamedTuple

from data.etcd.gateway import compare, decode, delete, delete_from_to, get, get_after, kvs, put
from data.statements.postgres import StaleRelay, StatementRefused, StatementsUnavailable
from data.store import StoreError

log = logging.getLogger("bank.data")

RELAY_LEASE_SECONDS = 5         # a relay that stops renewing is replaced after this long
RENEW_EVERY_SECONDS = 1.5       # the relay moves its key to a new lease this often
BATCH_ENTRIES = 500             # moved in one PostgreSQL transaction and one etcd deletion at most
IDLE_SECONDS = 0.2              # between looks while etcd holds no entries
RETRY_SECONDS = 1.0             # after a failure, before trying again
KEEP_DEADLINE_SECONDS = 3.0     # a batch not acknowledged by then is cancelled, its outcome unknown: well inside
CANCEL_WAIT_SECONDS = 1.0       # the lease, so that the relay still holds it for the deletion after a slow commit


class RelayStatus(NamedTuple):
    relay: str | None           # the data server relaying now, as r/relay names it
    lag_seconds: float | None   # the age of the oldest entry of the last batch moved, when it was moved
    alarm: str | None           # why relaying stopped (an entry kept with other contents), if it did


class StatementRelay:
    """The relay loop of one data server: it campaigns for r/relay and, while it holds it, moves batches."""

    def __init__(self, gateway, keys, statements, server_id, wall_clock=time.time):
        self._etcd, self._keys, self._statements = gateway, keys, statements
        self._server_id, self._wall_clock = server_id, wall_clock
        self._token = None
        self._renewed_at = 0.0
        self._cursor = None             # the last key moved: the next batch starts after it
        self._connection = None
        self._stuck = None              # a batch's thread still waiting for PostgreSQL's answer
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="statement-relay", daemon=True)

    def start(self):
        self._thread.start()

    def close(self):
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(KEEP_DEADLINE_SECONDS + 1)
        if self._token is not None:
            try:
                # Handed over at once: the next relay need not wait for the lease to run out.
                self._etcd.txn([compare(self._keys.relay(), "CREATE", "EQUAL", self._token)],
                               [delete(self._keys.relay())])
            except StoreError:
                pass
        if self._connection is not None:
            self._connection.close()

    def status(self):
        """The relay as etcd names it, and the last batch's lag as the relay recorded it."""
        answer = self._etcd.txn(success=[get(self._keys.relay()), get(self._keys.relay_progress()),
                                         get(self._keys.relay_alarm())], resend=True)
        relay, progress, alarm = (kvs(response) for response in answer["responses"])
        lag = json.loads(decode(progress[0]["value"]))["lag_ms"] / 1000 if progress else None
        return RelayStatus(decode(relay[0]["value"]) if relay else None, lag,
                           decode(alarm[0]["value"]) if alarm else None)

    # ---- the loop ----------------------------------------------------------------------------------------

    def _run(self):
        while not self._stopping.is_set():
            try:
                pause = self._step()
            except (StoreError, StatementsUnavailable) as error:
                log.warning("relay: %s; trying again", error)
                self._drop_connection()
                pause = RETRY_SECONDS
            except StaleRelay as error:
                log.warning("relay: replaced (%s)", error)
                self._token = None
                pause = RETRY_SECONDS
            except StatementRefused as error:
                log.error("relay: stopped: %s", error)
                pause = self._raise_alarm(str(error))
            except Exception:       # a bug: said loudly, and the relay goes on rather than ending unseen
                log.exception("relay: unexpected failure; trying again")
                self._drop_connection()
                pause = RETRY_SECONDS
            self._stopping.wait(pause)

    def _step(self):
        """One turn: campaign or renew, then move a batch; the seconds to wait before the next turn."""
        if self._stuck is not None and self._stuck.is_alive():
            return RETRY_SECONDS        # one batch at a time awaits PostgreSQL: no second one beside it
        if self._token is None and not self._campaign():
            return RETRY_SECONDS
        if not self._renewed_if_due():
            return RETRY_SECONDS
        return 0.0 if self._move_batch() else IDLE_SECONDS

    def _campaign(self):
        taken = self._etcd.txn(success=[get(self._keys.relay()), get(self._keys.relay_alarm())], resend=True)
        if any(kvs(response) for response in taken["responses"]):
            return False                # a lease is granted only for a campaign that may win
        lease = self._etcd.grant(RELAY_LEASE_SECONDS)
        answer = self._etcd.txn([compare(self._keys.relay(), "CREATE", "EQUAL", 0),
                                 compare(self._keys.relay_alarm(), "CREATE", "EQUAL", 0)],
                                [put(self._keys.relay(), self._server_id, lease)])
        if not answer.get("succeeded"):
            return False
        self._token, self._renewed_at = int(answer["header"]["revision"]), time.monotonic()
        self._cursor = None
        log.info("relay: this data server relays history to the statement store (token %s)", self._token)
        return True

    def _renewed_if_due(self):
        """Whether this is still the relay, r/relay moved to a new lease if RENEW_EVERY_SECONDS have passed."""
        return time.monotonic() - self._renewed_at < RENEW_EVERY_SECONDS or self._renew()

    def _renew(self):
        """Move r/relay to a new lease, if it is still this relay's; False (and no longer the relay) if not."""
        asked_at, lease = time.monotonic(), self._etcd.grant(RELAY_LEASE_SECONDS)
        answer = self._etcd.txn([compare(self._keys.relay(), "CREATE", "EQUAL", self._token)],
                                [put(self._keys.relay(), self._server_id, lease)])
        if not answer.get("succeeded"):
            log.warning("relay: no longer the relay (token %s)", self._token)
            self._token = None
            return False
        self._renewed_at = asked_at
        return True

    def _raise_alarm(self, why):
        """Record why relaying stopped, for every data server to show and none to relay past; give up r/relay."""
        try:
            self._etcd.txn(success=[put(self._keys.relay_alarm(), why)], resend=True)
            self._etcd.txn([compare(self._keys.relay(), "CREATE", "EQUAL", self._token)], [delete(self._keys.relay())])
        except StoreError as error:
            log.warning("relay: the alarm could not be recorded yet (%s)", error)
            return RETRY_SECONDS
        self._token = None
        return RETRY_SECONDS

    # ---- one batch ---------------------------------------------------------------------------------------

    def _move_batch(self):
        """Copy the next batch of entries to the statement store, then delete it from etcd; True if there was one."""
        answer = self._etcd.txn(success=[get_after(self._keys.all_entries(), self._cursor, BATCH_ENTRIES)],
                                resend=True)
        found = kvs(answer["responses"][0])
        if not found:
            self._cursor = None
            return False
        keys = [decode(kv["key"]) for kv in found]
        entries = [{"account": self._keys.account_of_entry(key), "seq": self._keys.seq_of_entry(key),
                    **json.loads(decode(kv["value"]))} for key, kv in zip(keys, found)]
        self._keep(entries)
        if not self._renewed_if_due():
            raise StaleRelay(f"r/relay is no longer token {self._token}'s; the batch stays in etcd")
        # Only while r/relay is still this relay's: a relay replaced meanwhile deletes nothing.
        deleted = self._etcd.txn([compare(self._keys.relay(), "CREATE", "EQUAL", self._token)],
                                 self._delete_runs(keys))
        if not deleted.get("succeeded"):
            raise StaleRelay(f"r/relay is no longer token {self._token}'s; the batch stays in etcd")
        self._cursor = keys[-1] if len(keys) == BATCH_ENTRIES else None
        now_ms = int(self._wall_clock() * 1000)
        lag_ms = max(0, now_ms - min(entry["at"] for entry in entries))
        # Apart from the deletion, which must go through even when etcd takes no more writes (at its quota).
        self._etcd.txn(success=[put(self._keys.relay_progress(), json.dumps(
            {"lag_ms": lag_ms, "at_ms": now_ms, "moved": len(entries)}))])
        return True

    def _keep(self, entries):
        """The statement store's durable acknowledgement of entries, waited for at most KEEP_DEADLINE_SECONDS."""
        if self._connection is not None and not self._statements.on_primary(self._connection):
            self._drop_connection()         # Patroni names another primary now
        if self._connection is None:
            self._connection = self._statements.connect()
        connection, outcome = self._connection, []

        def keep():
            try:
                self._statements.keep(connection, entries, self._token)
                outcome.append(None)
            except Exception as error:      # whatever it is, the relay thread hears of it and goes on
                outcome.append(error)

        worker = threading.Thread(target=keep, name="statement-keep", daemon=True)
        worker.start()
        worker.join(KEEP_DEADLINE_SECONDS)
        if worker.is_alive():
            # Cancelled, a commit waiting for the standby says so, and keep() counts it as not kept: the batch
            # stays in etcd, to be sent again.
            self._statements.cancel(connection)
            worker.join(CANCEL_WAIT_SECONDS)
        if worker.is_alive():
            self._stuck, self._connection = worker, None    # left to end on its own; never used again
            raise StatementsUnavailable(f"the statement store did not acknowledge {len(entries)} entries within "
                                        f"{KEEP_DEADLINE_SECONDS} s")
        if outcome[0] is not None:
            raise outcome[0]

    def _drop_connection(self):
        if self._connection is not None and (self._stuck is None or not self._stuck.is_alive()):
            self._connection.close()
        self._connection = None

    def _delete_runs(self, keys):
        """Deletions of keys (sorted, from one range read): one range per account, its first key to its last. No
        other key is in such a range: an account's later entries only ever come after its newest."""
        runs = {}
        for key in keys:
            runs.setdefault(self._keys.account_of_entry(key), [key, key])[1] = key
        return [delete_from_to(first, last) for first, last in runs.values()]


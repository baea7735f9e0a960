"""The embedded store's history: its entries in an SQLite file beside the journal, written behind it by one thread.

The journal is the truth: each commit record holds its entries, and this file only catches up with it. So an
entry is written here once the journal has it on disk (never one of a commit a crash could take back), each
(account, seq) once however often the journal is replayed; a read first waits until every entry committed before
it is here; a compaction, which drops the journal's entries, first waits until every one of them is here and on
disk. So the file's own writes need no fsync of their own (SQLite's synchronous=NORMAL): what a crash takes from it
is still in the journal. Memory holds only the entries not written yet, at most HISTORY_BEHIND_LIMIT_ENTRIES; the file
keeps every entry for good, or drops those past a retention if one is set.
"""
import collections
import itertools
import logging
import sqlite3
import threading
import time
from typing import NamedTuple

from data.store import HistoryUnavailable, StoreError

log = logging.getLogger("bank.data")

HISTORY_BEHIND_LIMIT_ENTRIES = 200_000  # committed but not in the file yet; past it, commits are refused
WRITE_BATCH_ENTRIES = 5_000             # written in one SQLite transaction at most
CATCH_UP_SECONDS = 10.0                 # longest a read or a compaction waits for the file to catch up
SWEEP_EVERY_SECONDS = 10.0              # between looks for entries past their retention
SWEEP_CHUNK_ENTRIES = 5_000             # dropped in one DELETE at most
# Seconds the writer lets entries gather after each write: fewer, larger SQLite transactions (make bench measured a
# write per commit at a tenth of the data server's CPU), for reads that wait that much longer at most.
GATHER_SECONDS = 0.005

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY, account TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
    cents INTEGER NOT NULL, balance INTEGER NOT NULL, counterparty TEXT, operation TEXT, key TEXT,
    at INTEGER NOT NULL, UNIQUE (account, seq));
"""
_COLUMNS = ("account", "seq", "kind", "cents", "balance", "counterparty", "operation", "key", "at")


class _Pending(NamedTuple):
    """An entry committed but not in the file yet."""
    journal_seq: int            # the journal record it came with, on disk before the entry may be written
    entry: dict


class HistoryFile:
    """Entries by account and seq in SQLite (path "" keeps them in memory), written by a thread of its own."""

    def __init__(self, path, retention, durable=lambda journal_seq: None, wall_clock=time.time):
        """retention: seconds an entry is kept, None for good; durable(journal_seq) returns once the journal holds
        that record on disk."""
        self._path = path or ":memory:"
        self._db = None
        self._db_lock = threading.Lock()
        self._retention_ms = None if retention is None else int(retention * 1000)
        self._durable, self._wall_clock = durable, wall_clock
        self._pending = collections.deque()     # _Pending, oldest first
        self._added = self._written = 0
        self._changed = threading.Condition()
        self._failure = None
        self._closing = False
        self._writer_idle = False           # the writer waits for entries: only then does add() wake it
        self._writer = threading.Thread(target=self._write_behind, name="history-writer", daemon=True)

    def open(self):
        """Open the file (in the journal's directory, made by then) and start writing behind the journal, what
        replay added first."""
        self._db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._writer.start()

    def require_room(self, count):
        """HistoryUnavailable if the file is so far behind that count more entries would pass the bound."""
        with self._changed:
            if len(self._pending) + count > HISTORY_BEHIND_LIMIT_ENTRIES:
                raise HistoryUnavailable(self._failure or "the history file is too far behind the journal; "
                                                          "nothing was applied, try again")

    def add(self, journal_seq, entries):
        """Entries of the journal's record journal_seq, to be written once that record is on disk."""
        with self._changed:
            self._pending.extend(_Pending(journal_seq, entry) for entry in entries)
            self._added += len(entries)
            if self._writer_idle:
                self._changed.notify_all()

    def caught_up(self):
        """Return once every entry added so far is in the file; HistoryUnavailable if it is not soon."""
        deadline = time.monotonic() + CATCH_UP_SECONDS
        with self._changed:
            upto = self._added
            while self._written < upto:
                if self._failure is not None:
                    raise HistoryUnavailable(self._failure)
                if not self._changed.wait(deadline - time.monotonic()) and time.monotonic() >= deadline:
                    raise HistoryUnavailable("the history file did not catch up with the journal in time")

    def on_disk(self):
        """Return once every entry added so far is in the file and on disk: before the journal may drop them."""
        self.caught_up()
        try:
            with self._db_lock:
                self._db.execute("PRAGMA wal_checkpoint(FULL)")
        except sqlite3.Error as error:
            raise HistoryUnavailable(f"the history file could not be made durable: {error}") from None

    def page(self, account, before, limit):
        """Up to limit entries of account with a seq below before (None: the newest), newest first."""
        self.caught_up()
        query = f"SELECT {', '.join(_COLUMNS)} FROM entries WHERE account = ? AND seq < ? ORDER BY seq DESC LIMIT ?"
        try:
            with self._db_lock:
                rows = self._db.execute(query, (account, before or 2 ** 62, limit)).fetchall()
        except sqlite3.Error as error:
            raise HistoryUnavailable(f"the history file could not be read: {error}") from None
        return [dict(zip(_COLUMNS, row)) for row in rows]

    def close(self):
        """Write what is left, then let go of the file."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._writer.is_alive():
            self._writer.join(CATCH_UP_SECONDS)
        with self._db_lock:
            if self._db is not None:
                self._db.close()

    def _write_behind(self):
        next_sweep = time.monotonic() + SWEEP_EVERY_SECONDS
        while True:
            with self._changed:
                while not self._pending and not self._closing:
                    self._writer_idle = True
                    self._changed.wait(max(0.0, next_sweep - time.monotonic()))
                    self._writer_idle = False
                    if time.monotonic() >= next_sweep:
                        break
                if self._closing and not self._pending:
                    return
                batch = list(itertools.islice(self._pending, WRITE_BATCH_ENTRIES))
            try:
                if batch:
                    self._write(batch)
                if time.monotonic() >= next_sweep:
                    self._sweep()
                    next_sweep = time.monotonic() + SWEEP_EVERY_SECONDS
            except (sqlite3.Error, OSError, StoreError) as error:
                with self._changed:
                    self._failure = f"the history file failed: {error}; it catches up at the next start"
                    self._changed.notify_all()
                log.error("history: %s", self._failure)
                return
            with self._changed:
                for _ in batch:
                    self._pending.popleft()
                self._written += len(batch)
                self._changed.notify_all()
            if batch and not self._closing:
                time.sleep(GATHER_SECONDS)

    def _write(self, batch):
        self._durable(batch[-1].journal_seq)
        rows = [tuple(pending.entry[column] for column in _COLUMNS) for pending in batch]
        with self._db_lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(f"INSERT OR IGNORE INTO entries ({', '.join(_COLUMNS)}) "
                                     f"VALUES ({', '.join('?' * len(_COLUMNS))})", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _sweep(self):
        """Drop entries past their retention, if there is one; made in time order, so only the oldest need a look."""
        if self._retention_ms is None:
            return
        oldest_kept = int(self._wall_clock() * 1000) - self._retention_ms
        while True:
            with self._db_lock:
                dropped = self._db.execute("DELETE FROM entries WHERE id IN (SELECT id FROM entries ORDER BY id "
                                           "LIMIT ?) AND at < ?", (SWEEP_CHUNK_ENTRIES, oldest_kept)).rowcount
            if dropped < SWEEP_CHUNK_ENTRIES:
                return

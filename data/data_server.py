"""The data server: every account's balance in memory, leased and fenced locks, and a durable journal.

Run it with exactly one gunicorn worker (threads for concurrency), so that the store is one.
"""
import collections
import itertools
import json
import logging
import math
import os
import threading
import time
import zlib

from flask import Blueprint, current_app, jsonify, request

from data.dashboard import Activity, dashboard_blueprint
from data.metrics import (COMMIT_WRITES, COMMITS, COMPACTION_SECONDS, FENCING_REFUSALS, JOURNAL_APPEND_SECONDS,
                          JOURNAL_FSYNC_SECONDS, LOCK_WAIT_SECONDS, LiveState)
from shared.auth import bearer_auth, configure_tokens
from shared.errors import ApiError
from shared.metrics import register_metrics_route
from shared.money import format_cents
from shared.settings import load_data_settings
from shared.validation import is_account_id, is_opaque_key
from shared.web import amount_cents, create_base_app, json_object, valid_account_id

log = logging.getLogger("bank.data")

FENCE_BLOCK = 10_000        # fencing tokens reserved in the journal at a time, so a lock costs no fsync
MAX_TOKEN = 2 ** 63 - 1
MAX_WAIT_MS = 10_000        # longest a getLock or getAmount may wait for its turn on a held account
MAX_WRITES_PER_COMMIT = 100
MAX_OPERATIONS_PER_COMMIT = 100
MAX_OPERATION_ID = 200
MAX_OPERATION_REQUEST = 512
SNAPSHOT_CHUNK = 10_000     # accounts per snapshot record, so no journal line grows with the bank
SNAPSHOT_RECORD_TYPES = ("fence", "accounts", "operations")
COMPACTION_SYNC_BYTES = 1 << 20    # how often a compaction flushes its snapshot as it writes it


class JournalCorrupt(Exception):
    """A record before the journal's last whole one does not check out: replaying past it would invent history."""


class JournalWriteFailed(Exception):
    """A record could not be written and was taken back out of the file: nothing was applied."""


class StorageFailed(Exception):
    """The journal failed in a way that leaves what is on disk unknown; nothing is acknowledged until a restart."""


class StoreUnavailable(Exception):
    """The store's cluster did not answer: what a write sent to it did is unknown."""


class LockHeld(Exception):
    def __init__(self, account, holder, remaining):
        super().__init__(f"account {account} is locked by {holder}")
        self.account, self.holder, self.remaining = account, holder, remaining


class NotLockHolder(Exception):
    """The caller's lease is gone, expired or was never its own."""

    def __init__(self, business, account, token):
        super().__init__(f"no live lease on {account} with token {token} for {business}")
        self.business, self.account, self.token = business, account, token


class UnknownAccount(Exception):
    pass


class OperationConflict(Exception):
    """Some of a commit's operation ids are recorded already, but not all of them as this same request."""


class RecordsFull(Exception):
    """Recording the commit's operations would pass their cap; nothing was applied."""

    def __init__(self, kind, retry_after):
        super().__init__(f"the {kind} records are at their cap")
        self.kind, self.retry_after = kind, retry_after


def _start_thread(job):
    threading.Thread(target=job, name="journal-compaction", daemon=True).start()


class Journal:
    """Append-only file of CRC-checked JSON lines; a record counts once its newline is in the file.

    Every acknowledged write is in it before the reply. Compaction writes a snapshot to a new file in the
    background while appends go on, then switches over atomically with the lines appended meanwhile.
    """

    def __init__(self, path, fsync_policy, background=_start_thread):
        self.path, self.fsync_policy = path, fsync_policy
        self.snapshot_size = 0          # bytes of the snapshot at the journal's head: compaction waits for twice it
        self.compactions = 0
        self.last_switch_seconds = 0.0  # how long the last compaction's switch held appends back
        self._background = background
        self._size = 0
        self._written_seq = 0
        self._synced_seq = 0
        self._fd = None
        self._failure = None            # why the journal failed; once set, nothing is acknowledged
        self._lines_during_compaction = None   # lines appended while a snapshot is being written
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._closed = threading.Event()

    def replay(self):
        """Yield the records up to the last whole one; drop a torn tail, refuse a corrupt middle."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as journal_file:
            content = journal_file.read()
        # What follows the last newline was never a whole record, whichever byte a crash cut it at.
        lines = content.split(b"\n")[:-1]
        valid_length = snapshot_size = 0
        records = []
        for index, line in enumerate(lines):
            record = _decode_record(line)
            if record is None:
                if any(_decode_record(later) is not None for later in lines[index + 1:]):
                    raise JournalCorrupt(f"{self.path}: record {index + 1} is corrupt and later records follow it")
                break
            records.append(record)
            in_snapshot = snapshot_size == valid_length and record["t"] in SNAPSHOT_RECORD_TYPES
            valid_length += len(line) + 1
            if in_snapshot:
                snapshot_size = valid_length
        if valid_length < len(content):
            log.warning("journal %s: dropped a torn tail of %d bytes at byte %d",
                        self.path, len(content) - valid_length, valid_length)
        self._size, self.snapshot_size = valid_length, snapshot_size
        yield from records

    def open(self):
        _make_directories(os.path.dirname(os.path.abspath(self.path)))
        created = not os.path.exists(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.ftruncate(self._fd, self._size)
        os.fsync(self._fd)
        if created:
            _fsync_directory(self.path)
        if self.fsync_policy == "everysec":
            threading.Thread(target=self._sync_every_second, name="journal-fsync", daemon=True).start()

    def check(self):
        """Raise StorageFailed once the journal has failed."""
        if self._failure is not None:
            raise StorageFailed(self._failure)

    def append(self, record):
        """Write one record through to the OS; return its sequence number for sync()."""
        line = _encode_record(record)
        with self._append_lock:
            self.check()
            started = time.perf_counter()
            try:
                _write_all(self._fd, line)
            except OSError as error:
                self._take_back_partial_write(error)
            JOURNAL_APPEND_SECONDS.observe(time.perf_counter() - started)
            self._size += len(line)
            self._written_seq += 1
            if self._lines_during_compaction is not None:
                self._lines_during_compaction.append(line)
            return self._written_seq

    @property
    def last_seq(self):
        return self._written_seq

    def sync(self, seq, force=False):
        """Return once record seq is on disk (policy always, or force); one fsync covers every writer waiting."""
        self.check()
        # Already on disk: no need to queue behind an fsync under way for later records.
        if (self.fsync_policy != "always" and not force) or self._synced_seq >= seq:
            return
        with self._sync_lock:
            self.check()
            if self._synced_seq >= seq:
                return
            target = self._written_seq
            self._fsync()
            self._synced_seq = target

    def due_for_compaction(self, min_bytes):
        return self._lines_during_compaction is None and self._size > max(min_bytes, 2 * self.snapshot_size)

    def start_compaction(self, snapshot_records):
        """Write snapshot_records to a new journal in the background, then switch to it.

        Call it where no append can run at the same time, so that the snapshot (a copy of the state as of now)
        and the lines kept for the switch meet exactly.
        """
        with self._append_lock:
            if self._lines_during_compaction is not None or self._failure is not None or self._fd is None:
                return
            self._lines_during_compaction = []
        self._background(lambda: self._compact(snapshot_records))

    def close(self):
        self._closed.set()
        with self._append_lock, self._sync_lock:
            if self._fd is not None:
                if self._failure is None:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def _compact(self, snapshot_records):
        started = time.perf_counter()
        temporary = self.path + ".compacting"
        fd = None
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            snapshot_size = synced_size = 0
            for record in snapshot_records:
                line = _encode_record(record)
                _write_all(fd, line)
                snapshot_size += len(line)
                # Flushed as it goes, so no single fsync floods the disk that the journal's own fsyncs wait on.
                if snapshot_size - synced_size >= COMPACTION_SYNC_BYTES:
                    os.fdatasync(fd)
                    synced_size = snapshot_size
            os.fsync(fd)
            if self._switch(fd, temporary, snapshot_size):
                fd = None
                self.compactions += 1
                COMPACTION_SECONDS.observe(time.perf_counter() - started)
                log.info("journal compacted to %d bytes in %.0f ms (appends held back %.1f ms)", snapshot_size,
                         (time.perf_counter() - started) * 1000, self.last_switch_seconds * 1000)
        except OSError:
            # The old journal is still whole and still in use: only compaction waits for the next chance.
            log.exception("journal compaction failed; will try again after a later write")
        finally:
            with self._append_lock:
                self._lines_during_compaction = None
            if fd is not None:
                os.close(fd)
                _remove_if_present(temporary)

    def _switch(self, fd, temporary, snapshot_size):
        """Append the lines written meanwhile to the new file and make it the journal; False if closed or failed."""
        with self._append_lock, self._sync_lock:
            switch_started = time.perf_counter()
            if self._fd is None or self._failure is not None:
                return False
            tail = b"".join(self._lines_during_compaction)
            _write_all(fd, tail)
            os.fsync(fd)
            os.replace(temporary, self.path)
            # From the rename on, the new file is the journal whatever happens next.
            os.close(self._fd)
            self._fd = fd
            self._size, self.snapshot_size = snapshot_size + len(tail), snapshot_size
            self._synced_seq = self._written_seq
            try:
                _fsync_directory(self.path)
            except OSError as error:
                self._failure = f"fsync of the directory of {self.path} failed: {error}"
                log.error("journal: %s; nothing is acknowledged until a restart", self._failure)
            self.last_switch_seconds = time.perf_counter() - switch_started
            return True

    def _fsync(self):
        started = time.perf_counter()
        try:
            os.fsync(self._fd)
            JOURNAL_FSYNC_SECONDS.observe(time.perf_counter() - started)
        except OSError as error:
            # After a failed fsync the kernel may have dropped the pages: what is on disk is unknown from now on.
            self._failure = f"fsync of {self.path} failed: {error}"
            log.error("journal: %s; nothing is acknowledged until a restart", self._failure)
            raise StorageFailed(self._failure) from error

    def _take_back_partial_write(self, error):
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as truncate_error:
            self._failure = f"write to {self.path} failed and could not be taken back: {truncate_error}"
            raise StorageFailed(self._failure) from error
        raise JournalWriteFailed(f"write to {self.path} failed: {error}") from error

    def _sync_every_second(self):
        while not self._closed.wait(1.0):
            with self._sync_lock:
                if self._fd is None or self._failure is not None or self._synced_seq >= self._written_seq:
                    continue
                target = self._written_seq
                try:
                    self._fsync()
                except StorageFailed:
                    return
                self._synced_seq = target


class MemoryJournal:
    """The journal when DATA_JOURNAL is empty: nothing survives a restart."""

    last_seq = 0
    compactions = 0
    last_switch_seconds = 0.0

    def replay(self):
        return iter(())

    def open(self):
        pass

    def check(self):
        pass

    def append(self, record):
        return 0

    def sync(self, seq, force=False):
        pass

    def due_for_compaction(self, min_bytes):
        return False

    def close(self):
        pass


class FencingTokens:
    """Tokens that only grow and never repeat, across restarts and OS crashes too.

    Blocks of them are reserved in the journal and synced, whatever the fsync policy, before any is handed out.
    """

    def __init__(self, journal):
        self._journal = journal
        self._last = 0
        self.reserved = 0

    def restore(self, upto):
        self.reserved = max(self.reserved, upto)
        self._last = self.reserved

    def next(self):
        if self._last + 1 > self.reserved:
            reserved = self._last + 1 + FENCE_BLOCK
            self._journal.sync(self._journal.append({"t": "fence", "upto": reserved}), force=True)
            self.reserved = reserved
        self._last += 1
        return self._last


class _RecordTable:
    """Operation records of one kind in the order they were made, kept for a retention, at most a limit."""

    def __init__(self, kind, retention, limit):
        self.kind, self._retention, self._limit = kind, retention, limit
        self._records = collections.OrderedDict()     # operation id -> {"id", "request", "result", "at", ...}

    def __len__(self):
        return len(self._records)

    def get(self, op_id, now):
        record = self._records.get(op_id)
        return record if record is not None and record["at"] >= now - self._retention else None

    def require_room(self, count, now):
        self._forget_expired(now)
        if len(self._records) + count > self._limit:
            oldest = next(iter(self._records.values()))
            raise RecordsFull(self.kind, max(1.0, oldest["at"] + self._retention - now))

    def add(self, record):
        self._records[record["id"]] = record

    def values(self):
        return self._records.values()

    def _forget_expired(self, now):
        """Made in time order, so only the oldest need a look."""
        while self._records and next(iter(self._records.values()))["at"] < now - self._retention:
            self._records.popitem(last=False)


class OperationRecords:
    """Each recorded operation's first result, so a retried request applies nothing twice.

    A client's Idempotency-Key record lives its whole retention. A write without a key is recorded only so that
    its commit may be sent again safely, for a short retention. Neither is dropped before its time: when a table
    is full, a write that needs room in it is refused and applies nothing.
    """

    def __init__(self, settings, wall_clock):
        self._wall_clock = wall_clock
        self._keyed = _RecordTable("idempotency", settings.operation_retention, settings.operation_limit)
        self._retry = _RecordTable("commit retry", settings.retry_record_retention, settings.retry_record_limit)

    def get(self, op_id):
        now = self._wall_clock()
        return self._keyed.get(op_id, now) or self._retry.get(op_id, now)

    def require_room(self, operations):
        now = self._wall_clock()
        keyed = sum(1 for op in operations if op.get("keyed", True))
        for table, count in ((self._keyed, keyed), (self._retry, len(operations) - keyed)):
            if count:
                table.require_room(count, now)

    def stamp(self, operations):
        """The operations as the journal records them: with the time they were made."""
        at = int(self._wall_clock())
        return [{"id": op["id"], "request": op["request"], "result": op["result"], "at": at,
                 **({} if op.get("keyed", True) else {"keyed": False})} for op in operations]

    def add(self, record):
        (self._keyed if record.get("keyed", True) else self._retry).add(record)

    def counts(self):
        return {"idempotency_records": len(self._keyed), "retry_records": len(self._retry)}

    def copy(self):
        return list(self._keyed.values()) + list(self._retry.values())


class Store:
    """Accounts, leases and the turns of those waiting for them; fencing and records are their own objects."""

    def __init__(self, journal, settings, clock=time.monotonic, wall_clock=time.time):
        self._journal = journal
        self._ttl = settings.lock_ttl
        self._compact_min_bytes = settings.compact_min_bytes
        self._clock = clock
        self._mutex = threading.Lock()
        self._wakeups = {}                                  # account id -> Condition: lease freed or line moved
        self._max_waiters = settings.lock_waiters           # waiting requests hold server threads: keep some free
        self._waiters = 0
        self._queues = {}                                   # account id -> deque of waiting requests, oldest first
        self._accounts = {}                                 # account id -> cents
        self._total_cents = 0                               # the sum of _accounts, kept as it changes
        self._leases = {}                                   # account id -> (business, token, expires_at)
        self._operations = OperationRecords(settings, wall_clock)   # wall clock: retention holds across restarts
        self._fence = FencingTokens(journal)
        self._sweep_leases_at = 10_000
        self.compaction_copy_seconds = 0.0      # how long the last compaction's copy held the mutex
        for record in journal.replay():
            self._apply_record(record)
        journal.open()

    def lock(self, business, account, token=None, lookup=(), wait=0.0):
        """Grant or renew a lease; return (token, remaining seconds, cents or None, recorded operations).

        While someone else holds it, wait up to `wait` seconds for this request's turn, in arrival order.
        """
        if token is None:
            granted, ttl, recorded = self.lock_all(business, [account], lookup, wait)
            _, token, amount = granted[0]
            return token, ttl, amount, recorded
        with self._mutex:
            self._journal.check()
            now = self._clock()
            self._require_holder(business, account, token, now)
            self._leases[account] = (business, token, now + self._ttl)
            recorded = self._lookup(lookup)
            amount, seq = self._accounts.get(account), self._journal.last_seq
        self._sync_or_give_back(seq, business, [(account, token)])
        return token, self._ttl, amount, recorded

    def lock_all(self, business, accounts, lookup=(), wait=0.0):
        """Lease every one of accounts at once, or none; return ([(account, token, cents or None)], ttl, recorded).

        Waits up to `wait` seconds until this request is first in line on every account and none is held; it
        holds nothing while it waits, so requests for overlapping sets never deadlock.
        """
        with self._mutex:
            self._journal.check()
            now = self._wait_turn(accounts, wait)
            # Every token first: if reserving more fails, no lease of the set has been granted.
            tokens = [self._fence.next() for _ in accounts]
            granted = []
            for account, token in zip(accounts, tokens):
                self._leases[account] = (business, token, now + self._ttl)
                granted.append((account, token, self._accounts.get(account)))
            self._sweep_expired_leases(now)
            recorded, seq = self._lookup(lookup), self._journal.last_seq
        self._sync_or_give_back(seq, business, [(account, token) for account, token, _ in granted])
        return granted, self._ttl, recorded

    def _sync_or_give_back(self, seq, business, leases):
        """Make what a lock reply shows durable before anyone sees it (or a crash could take back a value seen);
        if that fails, the caller hears an error, so it must not hold leases it does not know of."""
        try:
            self._journal.sync(seq)
        except StorageFailed:
            with self._mutex:
                for account, token in leases:
                    self._release_if_held(business, account, token)
            raise

    def unlock(self, business, account, token):
        with self._mutex:
            self._journal.check()
            self._require_holder(business, account, token, self._clock())
            self._release(account)

    def read(self, business, account, token=None, wait=0.0):
        """The account's cents; the holder reads with its token, anyone else waits its turn as in lock()."""
        with self._mutex:
            self._journal.check()
            if token is not None:
                self._require_holder(business, account, token, self._clock())
            else:
                self._wait_turn([account], wait)
            if account not in self._accounts:
                raise UnknownAccount(account)
            amount, seq = self._accounts[account], self._journal.last_seq
        self._journal.sync(seq)
        return amount

    def commit(self, business, writes, operations=(), unlock=False, release=None):
        """Apply writes {account: (cents, token)} all or nothing; return (replayed, recorded results).

        operations is a list of {"id", "request", "result", "keyed"}: if every id is recorded already with the
        same request, nothing is applied and the first results come back; a partial or different match conflicts.
        release: {account: token} of leases the caller gives back unwritten, once the commit is through.
        """
        with self._mutex:
            self._journal.check()
            first_results = self._recorded_results(operations)
            if first_results is None:
                seq = self._apply_commit(business, writes, operations, unlock)
            else:
                if unlock:
                    self._release_held(business, writes)
                seq = self._journal.last_seq
            for account, token in (release or {}).items():
                self._release_if_held(business, account, token)
        self._journal.sync(seq)
        if first_results is None:
            return False, [op["result"] for op in operations]
        return True, first_results

    def _recorded_results(self, operations):
        """None if no operation id is recorded; the first results if all are, for the same requests."""
        recorded = [self._operations.get(op["id"]) for op in operations]
        if not any(recorded):
            return None
        if all(rec is not None and rec["request"] == op["request"] for rec, op in zip(recorded, operations)):
            return [rec["result"] for rec in recorded]
        raise OperationConflict("an operation id of this commit is recorded for another request")

    def _apply_commit(self, business, writes, operations, unlock):
        """Check every lease and the records' room, journal the commit, apply it; return the sequence to sync."""
        now = self._clock()
        for account, (_, token) in writes.items():
            self._require_holder(business, account, token, now)
        self._operations.require_room(operations)
        record = {"t": "commit", "w": {account: cents for account, (cents, _) in writes.items()}}
        if operations:
            record["o"] = self._operations.stamp(operations)
        seq = self._journal.append(record)
        self._apply_record(record)
        if unlock:
            for account in writes:
                self._release(account)
        if self._journal.due_for_compaction(self._compact_min_bytes):
            self._start_compaction()
        return seq

    def view(self, most_leases):
        """The bank at a glance: total cents, accounts, waiters and up to most_leases live leases, soonest ending
        first, as (account, holder, token, seconds left)."""
        with self._mutex:
            now = self._clock()
            leases = sorted(((lease[2] - now, account, lease[0], lease[1]) for account, lease in self._leases.items()
                             if lease[2] > now))
            return {"total_cents": self._total_cents, "accounts": len(self._accounts), "waiting": self._waiters,
                    "lease_count": len(leases),
                    "leases": [(account, holder, token, left) for left, account, holder, token in leases[:most_leases]]}

    def counts(self):
        """How many accounts, live leases, waiting requests and records there are now."""
        with self._mutex:
            now = self._clock()
            live = sum(1 for lease in self._leases.values() if lease[2] > now)
            return {"accounts": len(self._accounts), "leases": live, "waiting": self._waiters,
                    **self._operations.counts()}

    def _wait_turn(self, accounts, wait):
        """Return the time once no live lease is on any of accounts and no earlier request waits for one of them.

        Waits up to `wait` seconds in arrival order, or raises LockHeld. A request joins every account's line in
        one step, so the lines agree on one order and the first request in it is first in all of its lines.
        Called with the mutex held.
        """
        now = self._clock()
        blocker = self._blocker(accounts, None, now)
        if blocker is None:
            return now
        if wait <= 0 or self._waiters >= self._max_waiters:
            raise self._held(*blocker, now)
        turn = object()
        for account in accounts:
            self._queues.setdefault(account, collections.deque()).append(turn)
            self._wakeups.setdefault(account, threading.Condition(self._mutex))
        self._waiters += 1
        started, deadline = now, now + wait
        try:
            while (blocker := self._blocker(accounts, turn, now)) is not None:
                if now >= deadline:
                    raise self._held(*blocker, now)
                # Wake at the latest when a lease would expire: expiry notifies no one.
                expiries = [lease[2] for lease in (self._live_lease(a, now) for a in accounts) if lease is not None]
                self._wakeups[blocker[0]].wait(min([deadline, *expiries]) - now)
                now = self._clock()
            return now
        finally:
            LOCK_WAIT_SECONDS.observe(self._clock() - started)
            for account in accounts:
                queue = self._queues[account]
                queue.remove(turn)
                if queue:
                    self._wakeups[account].notify_all()
                else:
                    del self._queues[account], self._wakeups[account]
            self._waiters -= 1

    def _blocker(self, accounts, turn, now):
        """(account, live lease or None) of the first account this request may not take yet, or None."""
        for account in accounts:
            lease = self._live_lease(account, now)
            queue = self._queues.get(account)
            if lease is not None or (queue and queue[0] is not turn):
                return account, lease
        return None

    def _held(self, account, lease, now):
        if lease is None:
            return LockHeld(account, "earlier waiting requests", 0.01)
        return LockHeld(account, lease[0], lease[2] - now)

    def _lookup(self, op_ids):
        recorded = {}
        for op_id in op_ids:
            record = self._operations.get(op_id)
            if record is not None:
                recorded[op_id] = {"request": record["request"], "result": record["result"]}
        return recorded

    def _release(self, account):
        del self._leases[account]
        waiting = self._wakeups.get(account)
        if waiting is not None:
            waiting.notify_all()

    def _live_lease(self, account, now):
        lease = self._leases.get(account)
        return lease if lease is not None and lease[2] > now else None

    def _require_holder(self, business, account, token, now):
        lease = self._live_lease(account, now)
        if lease is None or lease[:2] != (business, token):
            raise NotLockHolder(business, account, token)

    def _release_held(self, business, writes):
        for account, (_, token) in writes.items():
            self._release_if_held(business, account, token)

    def _release_if_held(self, business, account, token):
        lease = self._leases.get(account)
        if lease is not None and lease[:2] == (business, token):
            self._release(account)

    def _sweep_expired_leases(self, now):
        if len(self._leases) < self._sweep_leases_at:
            return
        for account in [a for a, lease in self._leases.items() if lease[2] <= now]:
            del self._leases[account]
        self._sweep_leases_at = max(10_000, 2 * len(self._leases))

    def _apply_record(self, record):
        kind = record["t"]
        if kind == "commit":
            self._set_amounts(record["w"])
            for op in record.get("o", ()):
                self._operations.add(op)
        elif kind == "accounts":
            self._set_amounts(record["a"])
        elif kind == "operations":
            for op in record["o"]:
                self._operations.add(op)
        elif kind == "fence":
            self._fence.restore(record["upto"])
        else:
            raise JournalCorrupt(f"unknown journal record type {kind!r}")

    def _set_amounts(self, amounts):
        for account, cents in amounts.items():
            self._total_cents += cents - self._accounts.get(account, 0)
            self._accounts[account] = cents

    def _start_compaction(self):
        """Copy the state under the mutex (the only pause writers see); the journal encodes and writes it later."""
        started = time.perf_counter()
        fence, accounts, operations = self._fence.reserved, self._accounts.copy(), self._operations.copy()
        self.compaction_copy_seconds = time.perf_counter() - started

        def snapshot_records():
            yield {"t": "fence", "upto": fence}
            items = iter(accounts.items())
            for _ in range(0, len(accounts), SNAPSHOT_CHUNK):
                yield {"t": "accounts", "a": dict(itertools.islice(items, SNAPSHOT_CHUNK))}
            for start in range(0, len(operations), SNAPSHOT_CHUNK):
                yield {"t": "operations", "o": operations[start:start + SNAPSHOT_CHUNK]}

        self._journal.start_compaction(snapshot_records())


def _encode_record(record):
    body = json.dumps(record, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _decode_record(line):
    checksum, _, body = line.partition(b" ")
    if len(checksum) != 8 or not body:
        return None
    try:
        if int(checksum, 16) != zlib.crc32(body):
            return None
        record = json.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "t" in record else None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_directory(path):
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_directories(directory):
    """Create directory and its missing parents, each made durable in its parent."""
    if os.path.isdir(directory):
        return
    _make_directories(os.path.dirname(directory))
    os.mkdir(directory, 0o700)
    _fsync_directory(directory)


def _remove_if_present(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---- HTTP --------------------------------------------------------------------------------------------

api = Blueprint("data", __name__)
auth = bearer_auth()


@api.before_request
@auth.login_required
def require_business_token():
    """Every data route but /health needs a business's bearer token."""
    current_app.extensions["bank.requests"].add()


class RequestCounter:
    """Authenticated requests served, reported by /health, so a benchmark can count data calls per operation."""

    def __init__(self):
        self._count = 0
        self._mutex = threading.Lock()

    def add(self):
        with self._mutex:
            self._count += 1

    @property
    def count(self):
        return self._count


def _store():
    return current_app.extensions["bank.store"]


def _caller(business_id, account_id=None):
    """The authenticated business, which must be the one named in the path."""
    caller = auth.current_user()
    if business_id != caller:
        raise ApiError(403, "wrong_business", "the path's business id is not the one this token belongs to")
    if account_id is not None:
        valid_account_id(account_id)
    return caller


def _optional_body():
    return json_object() if request.content_length or request.mimetype else {}


def _token(value, required=True):
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKEN:
        raise ApiError(400, "invalid_token", "token must be the positive integer that getLock returned")
    return value


def _flag(body, name):
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(400, "invalid_request", f"{name} must be true or false")
    return value


def _operations(body):
    operations = body.get("operations", [])
    if not isinstance(operations, list) or len(operations) > MAX_OPERATIONS_PER_COMMIT:
        raise ApiError(400, "invalid_operations", f"operations must be a list of at most "
                                                  f"{MAX_OPERATIONS_PER_COMMIT} objects")
    seen = set()
    for op in operations:
        if not (isinstance(op, dict) and is_opaque_key(op.get("id"), MAX_OPERATION_ID)
                and isinstance(op.get("request"), str) and len(op["request"]) <= MAX_OPERATION_REQUEST
                and "result" in op and isinstance(op.get("keyed", True), bool)):
            raise ApiError(400, "invalid_operations", "each operation needs an id (printable ASCII, at most "
                                                      f"{MAX_OPERATION_ID}), a request string, a result and "
                                                      "optionally keyed (true or false)")
        if op["id"] in seen:
            raise ApiError(400, "invalid_operations", f"operation id {op['id']} appears twice")
        seen.add(op["id"])
    return operations


def _releases(body):
    """The commit's "release" list as {account: token}: leases given back without a write."""
    items = body.get("release", [])
    if not isinstance(items, list) or len(items) > MAX_WRITES_PER_COMMIT:
        raise ApiError(400, "invalid_release", f"release must be a list of at most {MAX_WRITES_PER_COMMIT} objects")
    release = {}
    for item in items:
        if not isinstance(item, dict) or not is_account_id(item.get("account")) or item["account"] in release:
            raise ApiError(400, "invalid_release", "each release needs a distinct account id and its token")
        release[item["account"]] = _token(item.get("token"))
    return release


def _query_number(name):
    """A query parameter as an int if it is plain digits, else as sent, for the body's validators to judge."""
    text = request.args.get(name)
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) <= 19 else text


def _wait_seconds(value):
    if value is None:
        return 0.0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_WAIT_MS:
        raise ApiError(400, "invalid_wait", f"wait_ms must be a whole number of milliseconds from 0 to {MAX_WAIT_MS}")
    return value / 1000


def _lookup_ids(body):
    ids = body.get("lookup", [])
    if not isinstance(ids, list) or len(ids) > MAX_OPERATIONS_PER_COMMIT or not all(
            is_opaque_key(op_id, MAX_OPERATION_ID) for op_id in ids):
        raise ApiError(400, "invalid_lookup", "lookup must be a list of operation ids")
    return ids


def _locked(error):
    retry_after = max(1, math.ceil(error.remaining))
    return ApiError(423, "locked", f"account {error.account} is locked by {error.holder}",
                    {"Retry-After": str(retry_after)}, account=error.account, holder=error.holder,
                    retry_after_ms=max(1, round(error.remaining * 1000)))


def _store_call(function, *args, **kwargs):
    """Run a store operation and turn its refusals into HTTP errors."""
    try:
        return function(*args, **kwargs)
    except LockHeld as error:
        raise _locked(error) from None
    except NotLockHolder as error:
        FENCING_REFUSALS.inc()
        current_app.extensions["bank.activity"].refused(error.business, error.account, error.token)
        raise ApiError(409, "not_lock_holder", str(error)) from None
    except UnknownAccount as error:
        raise ApiError(404, "account_not_found", f"account {error} does not exist") from None
    except OperationConflict as error:
        raise ApiError(409, "operation_conflict", str(error)) from None
    except RecordsFull as error:
        raise ApiError(503, "idempotency_store_full", f"{error}; nothing was applied, try again later",
                       {"Retry-After": str(math.ceil(error.retry_after))}) from None
    except JournalWriteFailed as error:
        log.error("journal: %s", error)
        raise ApiError(503, "storage_unavailable", "the write could not be journaled; nothing was applied",
                       {"Retry-After": "1"}) from None
    except StorageFailed:
        raise ApiError(503, "storage_failed", "the journal could not be made durable, so what is on disk is unknown: "
                                              "this request's outcome is unknown and nothing is answered until the "
                                              "data server is restarted", {"Retry-After": "5"}) from None
    except StoreUnavailable as error:
        log.warning("store: %s", error)
        raise ApiError(503, "store_unavailable", "the store's cluster did not answer; a write sent to it may or may "
                                                 "not have been applied: retry with the same operation ids",
                       {"Retry-After": "1"}) from None


def _count_commit(business, writes, operations):
    COMMITS.inc()
    COMMIT_WRITES.observe(writes)
    current_app.extensions["bank.activity"].committed(business, operations)


def _amount_or_none(cents):
    return None if cents is None else format_cents(cents)


@api.post("/getLock/<business_id>/<account_id>")
def get_lock(business_id, account_id):
    business = _caller(business_id, account_id)
    body = _optional_body()
    token, ttl, cents, recorded = _store_call(
        _store().lock, business, account_id, _token(body.get("token"), required=False), _lookup_ids(body),
        _wait_seconds(body.get("wait_ms")))
    return jsonify(account=account_id, token=token, ttl=ttl, amount=_amount_or_none(cents), operations=recorded)


@api.post("/getLocks/<business_id>")
def get_locks(business_id):
    business = _caller(business_id)
    body = json_object()
    accounts = body.get("accounts")
    if not (isinstance(accounts, list) and 1 <= len(accounts) <= MAX_WRITES_PER_COMMIT
            and all(is_account_id(account) for account in accounts) and len(set(accounts)) == len(accounts)):
        raise ApiError(400, "invalid_accounts", f"accounts must be a list of 1 to {MAX_WRITES_PER_COMMIT} distinct "
                                                "account ids")
    granted, ttl, recorded = _store_call(_store().lock_all, business, sorted(accounts), _lookup_ids(body),
                                         _wait_seconds(body.get("wait_ms")))
    return jsonify(locks=[{"account": account, "token": token, "amount": _amount_or_none(cents)}
                          for account, token, cents in granted], ttl=ttl, operations=recorded)


@api.post("/unLock/<business_id>/<account_id>")
def un_lock(business_id, account_id):
    business = _caller(business_id, account_id)
    token = _token(json_object().get("token"))
    _store_call(_store().unlock, business, account_id, token)
    return jsonify(account=account_id, unlocked=True)


@api.post("/setAmount/<business_id>/<account_id>")
def set_amount(business_id, account_id):
    business = _caller(business_id, account_id)
    body = json_object()
    writes = {account_id: (amount_cents(body.get("amount")), _token(body.get("token")))}
    unlock = _flag(body, "unlock")
    _store_call(_store().commit, business, writes, unlock=unlock)
    _count_commit(business, 1, 1)
    return jsonify(account=account_id, amount=format_cents(writes[account_id][0]), unlocked=unlock)


@api.get("/getAmount/<business_id>/<account_id>")
def get_amount(business_id, account_id):
    business = _caller(business_id, account_id)
    token = _token(_query_number("token"), required=False)
    wait = _wait_seconds(_query_number("wait_ms"))
    cents = _store_call(_store().read, business, account_id, token, wait)
    return jsonify(account=account_id, amount=format_cents(cents))


@api.post("/commit/<business_id>")
def commit(business_id):
    business = _caller(business_id)
    body = json_object()
    operations = _operations(body)
    items = body.get("writes")
    release = _releases(body)
    # Operations alone may be recorded (a refusal under an idempotency key), or leases alone given back.
    fewest = 0 if operations or release else 1
    if not isinstance(items, list) or not fewest <= len(items) <= MAX_WRITES_PER_COMMIT:
        raise ApiError(400, "invalid_writes", f"writes must be a list of {fewest} to {MAX_WRITES_PER_COMMIT} objects")
    writes = {}
    for item in items:
        if not isinstance(item, dict) or not is_account_id(item.get("account")):
            raise ApiError(400, "invalid_writes", "each write needs an account id, an amount and a token")
        if item["account"] in writes or item["account"] in release:
            raise ApiError(400, "invalid_writes", f"account {item['account']} is written or released twice")
        writes[item["account"]] = (amount_cents(item.get("amount")), _token(item.get("token")))
    unlock = _flag(body, "unlock")
    replayed, results = _store_call(_store().commit, business, writes, operations, unlock, release)
    if not replayed:
        _count_commit(business, len(writes), max(len(operations), 1))
    return jsonify(replayed=replayed, results=results,
                   amounts={account: format_cents(cents) for account, (cents, _) in writes.items()},
                   unlocked=unlock and not replayed)


def create_app(settings=None, clock=time.monotonic, wall_clock=time.time, background=_start_thread):
    """The data server's app; background runs a compaction job (a thread unless a test says otherwise)."""
    settings = settings or load_data_settings()
    app = create_base_app(__name__, "data", settings.max_body_bytes, settings.log_level,
                          settings.log_summary_seconds)
    configure_tokens(app, settings.tokens)
    if settings.store == "etcd":
        from data.etcd_store import EtcdStore        # loaded only when chosen: it imports this module
        journal, store = MemoryJournal(), EtcdStore(settings, wall_clock)
    else:
        if settings.journal_path:
            journal = Journal(settings.journal_path, settings.fsync, background)
        else:
            journal = MemoryJournal()
        store = Store(journal, settings, clock, wall_clock)
    app.extensions["bank.store"] = store
    app.extensions["bank.journal"] = journal
    operator = register_metrics_route(app, settings.operator_tokens,
                                      [LiveState(store, journal, (StoreUnavailable,))])
    app.extensions["bank.activity"] = Activity()
    app.register_blueprint(dashboard_blueprint(operator, _store_call))
    requests_served = app.extensions["bank.requests"] = RequestCounter()

    @app.get("/health")
    def health():
        _store_call(journal.check)
        return jsonify(status="ok", requests=requests_served.count, **_store_call(store.counts),
                       compactions=journal.compactions,
                       compaction_copy_ms=round(store.compaction_copy_seconds * 1000, 1),
                       compaction_switch_ms=round(journal.last_switch_seconds * 1000, 1))

    app.register_blueprint(api)
    return app

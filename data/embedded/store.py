"""The embedded store: every balance, lease and waiting line in this process's memory, every change journaled.

One data-server process holds the bank (one gunicorn worker, threads for concurrency); data/embedded/journal.py makes it
durable, data/embedded/fencing.py hands out its tokens, data/embedded/records.py keeps its operation records and
data/embedded/history_file.py its accounts' history (memory holds only each account's last entry number).
"""
import collections
import math
import threading
import time
from typing import NamedTuple

from data import history
from data import holds as holds_module
from data.embedded.fencing import FencingTokens
from data.embedded.hold_table import HoldTable
from data.embedded.journal import JournalCorrupt
from data.embedded.owners import AccountOwners
from data.embedded.records import OperationRecords
from data.embedded.snapshot import SnapshotState, snapshot_records
from data.metrics import LOCK_WAIT_SECONDS
from data.store import (
    AccountsPage,
    AccountView,
    BankView,
    CallerGone,
    CommitOutcome,
    Counts,
    Grant,
    HistoryPage,
    LeaseView,
    LockGrant,
    LockHeld,
    LocksGrant,
    NotLockHolder,
    OperationConflict,
    Stats,
    StorageFailed,
    UnknownAccount,
    UnknownHold,
)


class _Lease(NamedTuple):
    holder: str
    token: int
    expires_at: float           # on the store's monotonic clock
    call: str | None = None     # the caller's id for the request it was granted to (lock_all)


class _Blocker(NamedTuple):
    """What keeps a request from an account for now."""
    account: str
    lease: _Lease | None        # its live lease; None: earlier requests wait for it


class EmbeddedStore:
    """Accounts, leases and the turns of those waiting for them; fencing and records are their own objects."""

    def __init__(self, journal, history_file, settings, clock=time.monotonic, wall_clock=time.time):
        self._journal = journal
        self._history = history_file
        self._ttl = settings.lock_ttl
        self._compact_min_bytes = settings.compact_min_bytes
        self._clock, self._wall_clock = clock, wall_clock
        self._mutex = threading.Lock()
        self._wakeups = {}                                  # account id -> Condition: lease freed or line moved
        self._max_waiters = settings.lock_waiters           # waiting requests hold server threads: keep some free
        self._waiters = 0
        self._queues = {}                                   # account id -> deque of waiting requests, oldest first
        self._accounts = {}                                 # account id -> cents
        self._total_cents = 0                               # the sum of _accounts, kept as it changes
        self._leases = {}                                   # account id -> _Lease
        self._seqs = {}                                     # account id -> its last history entry's seq
        self._owners = AccountOwners()
        self._operations = OperationRecords(settings, wall_clock)   # wall clock: retention holds across restarts
        self._holds = HoldTable(settings, wall_clock)
        self._fence = FencingTokens(journal)
        self._sweep_leases_at = 10_000
        self.compaction_copy_seconds = 0.0      # how long the last compaction's copy held the mutex
        for record in journal.replay():
            self._apply_record(record)
            if record.get("h"):
                history_file.add(0, record["h"])    # on disk already: the file catches up with it
        journal.open()
        history_file.open()

    def lock(self, business, account, token=None, lookup=(), wait=0.0):
        """Grant or renew a lease; while someone else holds it, wait up to `wait` seconds for this request's turn,
        in arrival order."""
        if token is None:
            granted = self.lock_all(business, [account], lookup, wait)
            grant = granted.grants[0]
            return LockGrant(grant.token, granted.ttl, grant.cents, granted.recorded, grant.owner, grant.holds)
        with self._mutex:
            self._journal.check()
            now = self._clock()
            self._require_holder(business, account, token, now)
            self._leases[account] = _Lease(business, token, now + self._ttl)
            recorded = self._lookup(lookup)
            grant, journal_seq = self._grant(account, token), self._journal.last_seq
        self._sync_or_give_back(journal_seq, business, [grant])
        return LockGrant(token, self._ttl, grant.cents, recorded, grant.owner, grant.holds)

    def lock_all(self, business, accounts, lookup=(), wait=0.0, call=None, answer_by=math.inf):
        """Lease every one of accounts at once, or none.

        Waits up to `wait` seconds (and not past answer_by) until this request is first in line on every account
        and none is held; it holds nothing while it waits, so requests for overlapping sets never deadlock.
        """
        with self._mutex:
            self._journal.check()
            now = self._clock()
            if now >= answer_by:
                raise CallerGone(accounts)
            leases = self._leases_of_call(business, accounts, call, now)
            if leases is None:
                now = self._wait_turn(accounts, min(wait, answer_by - now))
                # Every token first: if reserving more fails, no lease of the set has been granted.
                leases = [_Lease(business, self._fence.next(), now + self._ttl, call) for _ in accounts]
            else:
                # Taken over as new objects: the attempt it was granted to, finishing late, finds none of its own.
                leases = [lease._replace() for lease in leases]
            grants = []
            for account, lease in zip(accounts, leases):
                self._leases[account] = lease
                grants.append(self._grant(account, lease.token))
            self._sweep_expired_leases(now)
            recorded, journal_seq = self._lookup(lookup), self._journal.last_seq
        self._sync_or_give_back(journal_seq, business, grants)
        if self._clock() > answer_by:
            with self._mutex:
                for account, lease in zip(accounts, leases):
                    if self._leases.get(account) is lease:
                        self._release(account)
            raise CallerGone(accounts)
        return LocksGrant(grants, self._ttl, recorded)

    def _grant(self, account, token):
        return Grant(account, token, self._accounts.get(account), self._owners.owner(account),
                     self._holds.held_of(account))

    def _leases_of_call(self, business, accounts, call, now):
        """The live leases on accounts if every one is business's under call; else None."""
        leases = [self._live_lease(account, now) for account in accounts]
        mine = call is not None and all(lease and (lease.holder, lease.call) == (business, call) for lease in leases)
        return leases if mine else None

    def _sync_or_give_back(self, journal_seq, business, grants):
        """Make what a lock reply shows durable before anyone sees it (or a crash could take back a value seen);
        if that fails, the caller hears an error, so it must not hold the grants' leases it does not know of."""
        try:
            self._journal.sync(journal_seq)
        except StorageFailed:
            with self._mutex:
                for grant in grants:
                    self._release_if_held(business, grant.account, grant.token)
            raise

    def unlock(self, business, account, token):
        with self._mutex:
            self._journal.check()
            self._require_holder(business, account, token, self._clock())
            self._release(account)

    def read(self, business, account, token=None, wait=0.0):
        """The account's AccountView; the holder reads with its token, anyone else waits its turn as in lock()."""
        with self._mutex:
            self._journal.check()
            if token is not None:
                self._require_holder(business, account, token, self._clock())
            else:
                self._wait_turn([account], wait)
            if account not in self._accounts:
                raise UnknownAccount(account)
            seen = AccountView(self._accounts[account], self._owners.owner(account), self._holds.held_of(account))
            journal_seq = self._journal.last_seq
        self._journal.sync(journal_seq)
        return seen

    def commit(self, business, writes, operations=(), unlock=False, release=None, entries=None, holds=()):
        """Apply writes {account: Write} all or nothing (data/store.py says the rest)."""
        with self._mutex:
            self._journal.check()
            first_results = self._recorded_results(operations)
            if first_results is None:
                recorded = self._apply_commit(business, writes, operations, unlock, entries or {}, holds)
            elif unlock:
                self._release_held(business, writes)
            for account, token in (release or {}).items():
                self._release_if_held(business, account, token)
            journal_seq = self._journal.last_seq
        self._journal.sync(journal_seq)
        if first_results is None:
            return CommitOutcome(False, [op["result"] for op in operations], recorded)
        return CommitOutcome(True, first_results)

    def _recorded_results(self, operations):
        """None if no operation id is recorded; the first results if all are, for the same requests."""
        recorded = [self._operations.get(op["id"]) for op in operations]
        if not any(recorded):
            return None
        if all(rec is not None and rec["request"] == op["request"] for rec, op in zip(recorded, operations)):
            return [rec["result"] for rec in recorded]
        raise OperationConflict("an operation id of this commit is recorded for another request")

    def _apply_commit(self, business, writes, operations, unlock, entries, holds):
        """Check every lease, the history and the records' room, journal the commit, apply it; return the history
        entries recorded."""
        now = self._clock()
        for account, write in writes.items():
            self._require_holder(business, account, write.token, now)
        new_owners = self._owners.new_owners(writes)
        self._holds.check(holds, writes)
        amounts = {account: write.cents for account, write in writes.items()}
        # No balance is ever below zero: a commit that would leave one is a bug upstream, and applies nothing.
        assert all(cents >= 0 for cents in amounts.values()), f"a commit would leave a negative balance: {amounts}"
        holds_module.require_cover(amounts, {account: self._holds.held_of(account) for account in amounts}, holds)
        prior = {account: history.AccountState(self._accounts.get(account), self._seqs.get(account, 0))
                 for account in writes}
        recorded = history.numbered(amounts, entries, prior, operations[0]["id"] if operations else None,
                                    int(self._wall_clock() * 1000))
        self._history.require_room(len(recorded))
        self._operations.require_room(operations)
        record = {"t": "commit", "w": amounts}
        if new_owners:
            record["n"] = new_owners
        if operations:
            record["o"] = self._operations.stamp(operations)
        if recorded:
            record["h"] = recorded
        if holds:
            record["k"] = self._holds.stamp(holds)
        total_before = self._total_cents
        journal_seq = self._journal.append(record)
        self._apply_record(record)
        # The total stays the sum of the balances: it moved by exactly what this commit's balances moved.
        moved = sum(cents - (prior[account].cents or 0) for account, cents in amounts.items())
        assert self._total_cents - total_before == moved, (
            f"the total moved {self._total_cents - total_before} cents, the balances {moved}")
        self._history.add(journal_seq, recorded)
        if unlock:
            for account in writes:
                self._release(account)
        if self._journal.due_for_compaction(self._compact_min_bytes):
            self._start_compaction()
        return recorded

    def hold(self, hold_id):
        with self._mutex:
            self._journal.check()
            hold = self._holds.get(hold_id)
        if hold is None:
            raise UnknownHold(hold_id)
        return hold

    def due_holds(self, now_ms, limit):
        with self._mutex:
            self._journal.check()
            return self._holds.due(now_ms, limit)

    def view(self, most_leases):
        with self._mutex:
            now = self._clock()
            leases = sorted((LeaseView(account, lease.holder, lease.token, lease.expires_at - now)
                             for account, lease in self._leases.items() if lease.expires_at > now),
                            key=lambda lease: (lease.seconds_left, lease.account))
            return BankView(self._total_cents, len(self._accounts), self._waiters, len(leases), leases[:most_leases])

    def counts(self):
        with self._mutex:
            now = self._clock()
            live = sum(1 for lease in self._leases.values() if lease.expires_at > now)
            records = self._operations.counts()
            return Counts(len(self._accounts), live, self._waiters, records.idempotency, records.retry)

    def accounts(self, owner, after=None, limit=history.DEFAULT_PAGE_ENTRIES):
        with self._mutex:
            self._journal.check()
            listed = self._owners.page(owner, after, limit)
            return AccountsPage([(account, self._accounts[account]) for account in listed],
                                listed[-1] if len(listed) == limit else None)

    def history(self, account, before=None, limit=history.DEFAULT_PAGE_ENTRIES, owner=None):
        with self._mutex:
            self._journal.check()
            recorded_owner = self._owners.owner(account)
            if account not in self._accounts or owner not in (None, recorded_owner):
                raise UnknownAccount(account)
        entries = self._history.page(account, before, limit)
        oldest = entries[-1]["seq"] if entries else 1
        return HistoryPage(entries, oldest if len(entries) == limit and oldest > 1 else None, recorded_owner)

    def stats(self):
        self._journal.check()
        return Stats(self._journal.compactions, self.compaction_copy_seconds, self._journal.last_switch_seconds)

    def close(self):
        self._history.close()
        self._journal.close()

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
            raise self._held(blocker, now)
        turn = object()
        for account in accounts:
            self._queues.setdefault(account, collections.deque()).append(turn)
            self._wakeups.setdefault(account, threading.Condition(self._mutex))
        self._waiters += 1
        started, deadline = now, now + wait
        try:
            while (blocker := self._blocker(accounts, turn, now)) is not None:
                if now >= deadline:
                    raise self._held(blocker, now)
                # Wake at the latest when a lease would expire: expiry notifies no one.
                expiries = [lease.expires_at for lease in (self._live_lease(a, now) for a in accounts)
                            if lease is not None]
                self._wakeups[blocker.account].wait(min([deadline, *expiries]) - now)
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
        """The _Blocker of the first account this request may not take yet, or None."""
        for account in accounts:
            lease = self._live_lease(account, now)
            queue = self._queues.get(account)
            if lease is not None or (queue and queue[0] is not turn):
                return _Blocker(account, lease)
        return None

    def _held(self, blocker, now):
        if blocker.lease is None:
            return LockHeld(blocker.account, "earlier waiting requests", 0.01)
        return LockHeld(blocker.account, blocker.lease.holder, blocker.lease.expires_at - now)

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
        return lease if lease is not None and lease.expires_at > now else None

    def _require_holder(self, business, account, token, now):
        lease = self._live_lease(account, now)
        if lease is None or (lease.holder, lease.token) != (business, token):
            raise NotLockHolder(business, account, token)

    def _release_held(self, business, writes):
        for account, write in writes.items():
            self._release_if_held(business, account, write.token)

    def _release_if_held(self, business, account, token):
        lease = self._leases.get(account)
        if lease is not None and (lease.holder, lease.token) == (business, token):
            self._release(account)

    def _sweep_expired_leases(self, now):
        if len(self._leases) < self._sweep_leases_at:
            return
        for account in [a for a, lease in self._leases.items() if lease.expires_at <= now]:
            del self._leases[account]
        self._sweep_leases_at = max(10_000, 2 * len(self._leases))

    def _apply_record(self, record):
        kind = record["t"]
        if kind == "commit":
            self._set_amounts(record["w"])
            self._owners.add(record.get("n", {}))
            for op in record.get("o", ()):
                self._operations.add(op)
            self._seqs.update(history.last_seqs(record.get("h", ()), self._seqs))
            self._holds.apply(record.get("k", ()))
        elif kind == "holds":
            self._holds.apply(record["k"])
        elif kind == "accounts":
            self._set_amounts(record["a"])
            self._owners.add(record.get("n", {}))
            self._seqs.update(record.get("s", {}))
        elif kind == "operations":
            for op in record["o"]:
                self._operations.add(op)
        elif kind == "fence":
            self._fence.restore(record["upto"])
        else:
            raise JournalCorrupt(f"unknown journal record type {kind!r}")

    def _set_amounts(self, amounts):
        for account, cents in amounts.items():
            # What the journal holds too: no balance below zero, whether committed now or replayed.
            assert cents >= 0, f"account {account} would hold {cents} cents"
            self._total_cents += cents - self._accounts.get(account, 0)
            self._accounts[account] = cents

    def _start_compaction(self):
        """Copy the state under the mutex (the only pause writers see); the journal encodes and writes it later."""
        started = time.perf_counter()
        state = SnapshotState(self._fence.reserved, self._accounts.copy(), self._seqs.copy(), self._owners.copy(),
                              self._operations.copy(), self._holds.copy())
        self.compaction_copy_seconds = time.perf_counter() - started
        # The snapshot drops the journal's history entries: the history file must hold them all on disk first.
        self._journal.start_compaction(snapshot_records(state), prepare=self._history.on_disk)

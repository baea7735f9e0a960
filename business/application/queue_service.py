"""Every operation of a business server passes through one queue (in its batcher; in a test's app, in the app's
own process), and those waiting are applied together.

While one lock cycle is under way, the operations that arrive wait, whatever their accounts; the next cycle takes
them all (up to a bound): one lock request for every account they touch, each applied in arrival order against
its account's running balance, one commit that writes, records and releases, and each caller gets its own
outcome. No extra threads: the first caller to find the queue idle leads the cycle, then hands leadership to
the next caller still waiting.
"""
import collections
import logging
import random
import threading
import time
from typing import NamedTuple

from business.application import holds
from business.application.errors import AccountNotFound, BankError, IdempotencyConflict, ServiceUnavailable
from business.application.operations import Outcome, apply_batch, may_see
from business.application.ports import (
    AccountLocked,
    AccountMissing,
    DataRefused,
    DataStoreFull,
    DataTierFull,
    DataUnavailable,
    HistoryBehind,
    HoldIdTaken,
    HoldsAtCap,
    IdempotencyStoreFull,
    LeasedWrite,
    LeaseLost,
    OperationConflict,
    OperationQueue,
    QueueObserver,
)
from shared.validation import operation_reference

log = logging.getLogger("bank.business")

FIRST_BACKOFF_SECONDS = 0.002       # doubles up to MAX_BACKOFF_SECONDS while an account stays locked
MAX_BACKOFF_SECONDS = 0.05
SERVER_WAIT_SECONDS = 0.5           # the data server may queue one lock or read request this long for a held account


class FullRefusal(NamedTuple):
    """What a refusal for lack of room at the data tier is to the client."""
    code: str
    message: str


FULL_REFUSALS = {
    IdempotencyStoreFull: FullRefusal("idempotency_store_full", "the data server holds as many operation records as "
                                                                "it may; nothing was applied, try again later"),
    DataStoreFull: FullRefusal("store_full", "the data tier's store is full and takes no writes until an operator "
                                             "makes room; nothing was applied, try again later"),
    HistoryBehind: FullRefusal("history_unavailable", "the bank cannot keep its statements up to date now; nothing "
                                                      "was applied, try again"),
    HoldsAtCap: FullRefusal("holds_full", "the bank holds as many holds as it may; nothing was applied, try again "
                                          "later"),
}


def _no_room(full):
    refusal = FULL_REFUSALS[type(full)]
    return ServiceUnavailable(refusal.code, refusal.message, full.retry_after)


def _unavailable(accounts, error):
    log.warning("%s: %s", " ".join(accounts), error)
    return ServiceUnavailable("data_unavailable", "the data server is unavailable; nothing was applied")


class _Waiter:
    __slots__ = ("operation", "deadline", "outcome", "leads", "reads", "wake")

    def __init__(self, operation, deadline):
        self.operation = operation
        self.deadline = deadline    # past it, an operation set aside for a held account is answered account_busy
        self.outcome = None
        self.leads = False
        self.reads = False          # its turn came in a batch of reads only: it reads its balance itself
        self.wake = threading.Event()


class QueueService(OperationQueue):
    def __init__(self, locks, amounts, lock_wait, queue_limit, batch_limit, holds_per_account=20,
                 clock=time.monotonic, sleep=time.sleep, jitter=random.random, observer=None, wall_clock=time.time):
        """holds_per_account: holds one account may have held at once; wall_clock: the time holds expire by."""
        self._locks, self._amounts, self._observer = locks, amounts, observer or QueueObserver()
        self._holds_per_account, self._wall_clock = holds_per_account, wall_clock
        self._lock_wait, self._queue_limit, self._batch_limit = lock_wait, queue_limit, batch_limit
        self._clock, self._sleep, self._jitter = clock, sleep, jitter
        self._mutex = threading.Lock()
        self._waiting = collections.deque()         # waiters of every account, oldest first
        self._pending = collections.Counter()       # account -> its waiters in _waiting
        self._busy = False

    def submit(self, operation):
        """Apply operation in a coming lock cycle; return its Outcome or raise its BankError."""
        waiter = _Waiter(operation, self._clock() + self._lock_wait)
        with self._mutex:
            if self._pending[operation.account] >= self._queue_limit:
                raise ServiceUnavailable("queue_full", f"too many operations are waiting on {operation.account}")
            self._enqueue([waiter])
            if not self._busy:
                self._busy = waiter.leads = True
                waiter.wake.set()
        while waiter.outcome is None:
            waiter.wake.wait()
            waiter.wake.clear()
            if waiter.leads:
                waiter.leads = False
                self._lead()
            elif waiter.reads:
                return self._read(operation, waiter.deadline)
        if isinstance(waiter.outcome, BaseException):
            raise waiter.outcome
        return waiter.outcome

    def pending(self, account):
        """How many operations on account wait in this queue, not counting a lock cycle under way."""
        with self._mutex:
            return self._pending[account]

    def _enqueue(self, waiters, front=False):
        self._observer.waiting(len(waiters))
        for waiter in waiters:
            self._pending[waiter.operation.account] += 1
        if front:
            self._waiting.extendleft(reversed(waiters))
        else:
            self._waiting.extend(waiters)

    def _lead(self):
        with self._mutex:
            batch = [self._waiting.popleft() for _ in range(min(len(self._waiting), self._batch_limit))]
            self._observer.waiting(-len(batch))
            for waiter in batch:
                self._pending[waiter.operation.account] -= 1
                if not self._pending[waiter.operation.account]:
                    del self._pending[waiter.operation.account]
        if not any(waiter.operation.writes for waiter in batch):
            # Balances need no lock: each is read by its own caller, all at once, and the line goes on meanwhile
            # (the data server answers a read of an account under a lease once the lease is given back).
            self._pass_on([])
            for waiter in batch:
                waiter.reads = True
                waiter.wake.set()
            return
        self._observer.lock_cycle(len(batch))
        handed_over = set()     # once the lead is passed on: the positions still this cycle's

        def hand_over(committing):
            """The commit of the batch's positions committing goes unanswered and is sent again: the line behind
            it goes on meanwhile (the next cycle waits at the data server for any account this one holds)."""
            handed_over.update(committing)
            self._pass_on([waiter for position, waiter in enumerate(batch) if position not in committing])

        try:
            outcomes = self._lock_cycle([waiter.operation for waiter in batch], hand_over)
        except Exception as error:
            # Every waiter of this cycle must hear back, even from a bug, or its request would hang.
            log.exception("lock cycle failed")
            outcomes = [error if not handed_over or position in handed_over else None for position in range(len(batch))]
        if not handed_over:
            self._pass_on([waiter for waiter, outcome in zip(batch, outcomes) if outcome is None])
        for waiter, outcome in zip(batch, outcomes):
            if outcome is not None:
                waiter.outcome = outcome
                waiter.wake.set()

    def _pass_on(self, set_aside):
        """Put the operations set aside first in the line, still in arrival order (answering account_busy those
        past their deadline), and hand the lead to the first waiting, if any."""
        now = self._clock()
        for waiter in [waiter for waiter in set_aside if now >= waiter.deadline]:
            waiter.outcome = ServiceUnavailable("account_busy", f"account {waiter.operation.account} stayed busy; "
                                                                "nothing was applied, try again")
            waiter.wake.set()
        with self._mutex:
            self._enqueue([waiter for waiter in set_aside if waiter.outcome is None], front=True)
            if self._waiting:
                successor = self._waiting[0]
                successor.leads = True
                successor.wake.set()
            else:
                self._busy = False

    def _lock_cycle(self, operations, hand_over=lambda committing: None):
        """Apply operations in one lock request and one commit; return their outcomes, None for those set aside.

        When an account stays held past the wait, the operations that touch it (and any later one that shares an
        account with those) are set aside for the next cycle and the others go on at once. hand_over(positions)
        is called if the commit of those positions must be sent again.
        """
        outcomes = [None] * len(operations)
        going = list(range(len(operations)))
        deadline, delay = self._clock() + self._lock_wait, FIRST_BACKOFF_SECONDS
        while True:
            batch = [operations[i] for i in going]
            accounts = sorted({a for op in batch for a in op.accounts})
            try:
                leases = self._locks.acquire_all(accounts, [op.operation_id for op in batch if op.keyed],
                                                 self._server_wait(deadline))
            except AccountLocked as locked:
                held = _touching(batch, locked.account)
                if 0 < len(held) < len(batch):
                    going = [i for position, i in enumerate(going) if position not in held]
                    continue
                try:
                    delay = self._pause(deadline, delay, locked)
                except ServiceUnavailable as busy:
                    return _fill(outcomes, going, busy)
                continue
            except DataTierFull as full:
                return _fill(outcomes, going, _no_room(full))
            except (DataUnavailable, DataRefused) as error:
                return _fill(outcomes, going, _unavailable(accounts, error))
            try:
                results = self._apply_and_commit(batch, leases, lambda going=going: hand_over(set(going)))
            except BankError as error:
                return _fill(outcomes, going, error)
            except HoldIdTaken as taken:
                placing = [i for i in going if operations[i].kind == "hold"
                           and operation_reference(operations[i].operation_id) == taken.hold_id]
                if not placing:
                    return _fill(outcomes, going, ServiceUnavailable("account_busy", "a hold changed hands before the "
                                                                                     "write; nothing was applied"))
                # The bank keeps a hold of this key's already: that one request is refused, the rest go again.
                outcomes[placing[0]] = IdempotencyConflict("this Idempotency-Key was used for an earlier hold, which "
                                                           "the bank still keeps")
                going.remove(placing[0])
                if not going:
                    return outcomes
                continue
            for i, outcome in zip(going, results):
                outcomes[i] = outcome
            return outcomes

    def _apply_and_commit(self, operations, leases, on_resend):
        applied = apply_batch(operations, leases, holds.HoldRules(self._now_ms(), self._holds_per_account))
        if not applied.records and not applied.holds:
            self._release_all(leases.values())
            return applied.outcomes
        # Every account with an entry is written, even one whose changes add up to nothing, and every one opened.
        changed = {entry["account"] for entry in applied.entries} | set(applied.new_owners)
        writes = {a: LeasedWrite(applied.balances[a], lease, applied.new_owners.get(a)) for a, lease in leases.items()
                  if a in changed}
        untouched = [lease for a, lease in leases.items() if a not in writes]
        try:
            self._amounts.commit(writes, applied.records, untouched, applied.entries, on_resend, applied.holds)
        except (LeaseLost, OperationConflict):
            self._release_all(leases.values())
            raise ServiceUnavailable("account_busy", "the account changed hands before the write; nothing was "
                                                     "applied, try again") from None
        except DataTierFull as full:
            self._release_all(leases.values())
            raise _no_room(full) from None
        except HoldIdTaken:
            self._release_all(leases.values())
            raise
        except (DataUnavailable, DataRefused) as error:
            log.warning("commit on %s: %s", sorted(leases), error)
            raise ServiceUnavailable("data_unavailable", "the data server did not confirm the write; retry with "
                                                         "the same Idempotency-Key to learn the outcome") from None
        return applied.outcomes

    def _read(self, operation, deadline):
        """The Outcome of a balance read without a lock; raise the BankError that refuses it."""
        account, delay = operation.account, FIRST_BACKOFF_SECONDS
        while True:
            try:
                seen = self._amounts.get(account, self._server_wait(deadline))
                break
            except AccountMissing:
                seen = None
                break
            except AccountLocked as locked:
                delay = self._pause(deadline, delay, locked)
            except (DataUnavailable, DataRefused) as error:
                raise _unavailable([account], error) from None
        if seen is None or not may_see(operation.client, operation.operator, seen.owner):
            # Another's account is refused in the very words of an unknown one (operations.py).
            raise AccountNotFound(f"account {account} does not exist")
        return Outcome({"balance": seen.cents, "owner": seen.owner,
                        "available": holds.available(seen.cents, seen.holds, self._now_ms())})

    def _now_ms(self):
        return int(self._wall_clock() * 1000)

    def _server_wait(self, deadline):
        return max(0.0, min(SERVER_WAIT_SECONDS, deadline - self._clock()))

    def _pause(self, deadline, delay, locked):
        """Sleep a jittered delay (never past deadline) and return the next, doubled; 503 once past deadline."""
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ServiceUnavailable("account_busy", f"account {locked.account} stayed busy; try again")
        self._observer.retry()
        self._sleep(min(remaining, locked.retry_after, delay * (0.5 + self._jitter())))
        return min(delay * 2, MAX_BACKOFF_SECONDS)

    def _release_all(self, leases):
        for lease in leases:
            try:
                self._locks.release(lease)
            except (DataUnavailable, DataRefused) as error:
                # The lease expires by itself within LOCK_TTL; nothing was written under it.
                log.warning("release of %s: %s", lease.account, error)


def _touching(operations, account):
    """Positions of the operations that touch account, and of any later one sharing an account with those."""
    held, accounts = set(), {account}
    for position, operation in enumerate(operations):
        if accounts & set(operation.accounts):
            held.add(position)
            accounts.update(operation.accounts)
    return held


def _fill(outcomes, positions, outcome):
    for position in positions:
        outcomes[position] = outcome
    return outcomes

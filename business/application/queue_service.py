"""Every operation on an account passes through that account's queue in this worker.

The operations waiting on one account are applied together in one lock cycle: lock once, read once, apply each
in arrival order against the running balance, write once (releasing the locks), and each caller gets its own
outcome. No extra threads: the first caller to find the queue idle leads the cycle, then hands leadership to
the next caller still waiting.
"""
import collections
import logging
import random
import threading
import time
from dataclasses import dataclass

from business.application.errors import (AccountNotFound, BalanceLimitExceeded, BankError, IdempotencyConflict,
                                         InsufficientFunds, ServiceUnavailable)
from business.application.ports import (AccountLocked, AccountMissing, DataRefused, DataUnavailable,
                                        IdempotencyStoreFull, LeaseLost, OperationConflict)

log = logging.getLogger("bank.business")

MAX_BALANCE_CENTS = 10 ** 18
REFUSALS = (AccountNotFound, InsufficientFunds, BalanceLimitExceeded)
REFUSALS_BY_CODE = {refusal.code: refusal for refusal in REFUSALS}
FIRST_BACKOFF = 0.002       # seconds; doubles up to MAX_BACKOFF while an account stays locked
MAX_BACKOFF = 0.05
SERVER_WAIT = 0.5           # seconds the data server may queue one lock or read request for a held account


@dataclass(frozen=True)
class Operation:
    kind: str                  # deposit | withdrawal | transfer | balance
    account: str               # the account credited, debited or read; the origin of a transfer
    amount_cents: int = 0
    target: str | None = None
    operation_id: str = ""     # what the data server records it under
    keyed: bool = False        # from a client's Idempotency-Key: an earlier result may exist

    @property
    def request(self):
        """What the operation asks, to tell a retry from another request under the same key."""
        return f"{self.kind} {self.account} {self.target or '-'} {self.amount_cents}"

    @property
    def writes(self):
        return self.kind != "balance"


@dataclass(frozen=True)
class Outcome:
    result: dict               # {"balance": cents} and, for a transfer, {"target_balance": cents}
    replayed: bool = False


def _unavailable(accounts, error):
    log.warning("%s: %s", " ".join(accounts), error)
    return ServiceUnavailable("data_unavailable", "the data server is unavailable; nothing was applied")


class _Waiter:
    __slots__ = ("operation", "outcome", "leads", "wake")

    def __init__(self, operation):
        self.operation = operation
        self.outcome = None
        self.leads = False
        self.wake = threading.Event()


class _AccountQueue:
    __slots__ = ("waiting", "busy")

    def __init__(self):
        self.waiting = collections.deque()
        self.busy = False


class QueueService:
    def __init__(self, locks, amounts, lock_wait, queue_limit, batch_limit,
                 clock=time.monotonic, sleep=time.sleep, jitter=random.random):
        self._locks, self._amounts = locks, amounts
        self._lock_wait, self._queue_limit, self._batch_limit = lock_wait, queue_limit, batch_limit
        self._clock, self._sleep, self._jitter = clock, sleep, jitter
        self._mutex = threading.Lock()
        self._queues = {}

    def submit(self, operation):
        """Apply operation in its account's next lock cycle; return its Outcome or raise its BankError."""
        waiter = _Waiter(operation)
        with self._mutex:
            queue = self._queues.setdefault(operation.account, _AccountQueue())
            if len(queue.waiting) >= self._queue_limit:
                raise ServiceUnavailable("queue_full", f"too many operations are waiting on {operation.account}")
            queue.waiting.append(waiter)
            if not queue.busy:
                queue.busy = waiter.leads = True
        if not waiter.leads:
            waiter.wake.wait()
        if waiter.leads:
            self._lead(operation.account, queue)
        if isinstance(waiter.outcome, BaseException):
            raise waiter.outcome
        return waiter.outcome

    def pending(self, account):
        """How many operations wait on account in this worker, not counting a lock cycle under way."""
        with self._mutex:
            queue = self._queues.get(account)
            return len(queue.waiting) if queue else 0

    def _lead(self, account, queue):
        with self._mutex:
            batch = [queue.waiting.popleft() for _ in range(min(len(queue.waiting), self._batch_limit))]
        try:
            outcomes = self._lock_cycle(account, [waiter.operation for waiter in batch])
        except BankError as error:
            outcomes = [error] * len(batch)
        except Exception as error:
            # Every waiter must hear back, even from a bug, or its request would hang.
            log.exception("lock cycle of %s failed", account)
            outcomes = [error] * len(batch)
        for waiter, outcome in zip(batch, outcomes):
            waiter.outcome = outcome
        with self._mutex:
            if queue.waiting:
                successor = queue.waiting[0]
                successor.leads = True
                successor.wake.set()
            else:
                queue.busy = False
                del self._queues[account]
        for waiter in batch:
            waiter.wake.set()

    def _lock_cycle(self, account, operations):
        if not any(operation.writes for operation in operations):
            return [Outcome({"balance": self._read(account)})] * len(operations)
        accounts = sorted({account} | {op.target for op in operations if op.target})
        leases = self._acquire_all(accounts, [op.operation_id for op in operations if op.keyed])
        outcomes, balances, records = _apply(operations, leases)
        if not records:
            self._release_all(leases.values())
            return outcomes
        writes = {a: (balances[a], leases[a]) for a in accounts if balances[a] is not None}
        try:
            self._amounts.commit(writes, records)
        except (LeaseLost, OperationConflict):
            self._release_all(leases.values())
            raise ServiceUnavailable("account_busy", "the account changed hands before the write; nothing was "
                                                     "applied, try again") from None
        except IdempotencyStoreFull as full:
            self._release_all(leases.values())
            raise ServiceUnavailable("idempotency_store_full", "the data server holds as many operation records as "
                                     "it may; nothing was applied, try again later", full.retry_after) from None
        except (DataUnavailable, DataRefused) as error:
            log.warning("commit on %s: %s", accounts, error)
            raise ServiceUnavailable("data_unavailable", "the data server did not confirm the write; retry with "
                                                         "the same Idempotency-Key to learn the outcome") from None
        self._release_all(lease for a, lease in leases.items() if a not in writes)
        return outcomes

    def _acquire_all(self, accounts, lookup):
        """Lock accounts in one all-or-nothing request, waiting in the data server's lines for them.

        Nothing is held while waiting, so crossing transfers never wait on each other; the keys are looked up
        with the leases, once no one else can commit these operations.
        """
        deadline, delay = self._clock() + self._lock_wait, FIRST_BACKOFF
        while True:
            try:
                return self._locks.acquire_all(accounts, lookup, self._server_wait(deadline))
            except AccountLocked as locked:
                delay = self._pause(deadline, delay, locked)
            except (DataUnavailable, DataRefused) as error:
                raise _unavailable(accounts, error) from None

    def _read(self, account):
        deadline, delay = self._clock() + self._lock_wait, FIRST_BACKOFF
        while True:
            try:
                return self._amounts.get(account, self._server_wait(deadline))
            except AccountMissing:
                raise AccountNotFound(f"account {account} does not exist") from None
            except AccountLocked as locked:
                delay = self._pause(deadline, delay, locked)
            except (DataUnavailable, DataRefused) as error:
                raise _unavailable([account], error) from None

    def _server_wait(self, deadline):
        return max(0.0, min(SERVER_WAIT, deadline - self._clock()))

    def _pause(self, deadline, delay, locked):
        """Sleep a jittered delay (never past deadline) and return the next, doubled; 503 once past deadline."""
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ServiceUnavailable("account_busy", f"account {locked.account} stayed busy; try again")
        self._sleep(min(remaining, locked.retry_after, delay * (0.5 + self._jitter())))
        return min(delay * 2, MAX_BACKOFF)

    def _release_all(self, leases):
        for lease in leases:
            try:
                self._locks.release(lease)
            except (DataUnavailable, DataRefused) as error:
                # The lease expires by itself within LOCK_TTL; nothing was written under it.
                log.warning("release of %s: %s", lease.account, error)


def _apply(operations, leases):
    """Apply operations in order to the leased balances; return (outcomes, balances, records to commit)."""
    balances = {account: lease.amount_cents for account, lease in leases.items()}
    earlier = {}
    for lease in leases.values():
        earlier.update(lease.recorded)
    outcomes, records = [], []
    for operation in operations:
        first = earlier.get(operation.operation_id) if operation.keyed else None
        if first is not None:
            outcomes.append(_replay(first, operation))
            continue
        outcome = _apply_one(operation, balances)
        outcomes.append(outcome)
        result = _recordable_result(operation, outcome)
        if result is not None:
            record = {"id": operation.operation_id, "request": operation.request, "result": result,
                      "keyed": operation.keyed}
            records.append(record)
            earlier[operation.operation_id] = record
    return outcomes, balances, records


def _recordable_result(operation, outcome):
    """What the data server records for operation: every applied write, and a keyed write's refusal.

    A refusal is recorded too, because an earlier attempt under the same key may still be on its way to some
    server; without the record it could be applied after the client was told it was refused.
    """
    if not operation.writes:
        return None
    if isinstance(outcome, Outcome):
        return outcome.result
    if operation.keyed and isinstance(outcome, REFUSALS):
        return {"refused": outcome.code, "message": outcome.message}
    return None


def _replay(first, operation):
    """The first outcome recorded under operation's key, or a conflict if the key was used for another request."""
    if first["request"] != operation.request:
        return IdempotencyConflict("this Idempotency-Key was used for another request")
    refused = first["result"].get("refused")
    if refused is not None:
        return REFUSALS_BY_CODE[refused](first["result"]["message"])
    return Outcome(first["result"], replayed=True)


def _apply_one(operation, balances):
    """Apply one operation to balances; return its Outcome, or the BankError that refuses it."""
    account, amount = operation.account, operation.amount_cents
    current = balances[account]
    if operation.kind == "deposit":
        new_balance = (current or 0) + amount
        if new_balance > MAX_BALANCE_CENTS:
            return BalanceLimitExceeded(f"account {account} would exceed the largest balance")
        balances[account] = new_balance
        return Outcome({"balance": new_balance})
    if current is None:
        return AccountNotFound(f"account {account} does not exist")
    if operation.kind == "balance":
        return Outcome({"balance": current})
    target = balances.get(operation.target)
    if operation.kind == "transfer" and target is None:
        return AccountNotFound(f"account {operation.target} does not exist")
    if current < amount:
        return InsufficientFunds(f"account {account} has not enough funds")
    if operation.kind == "withdrawal":
        balances[account] = current - amount
        return Outcome({"balance": current - amount})
    if target + amount > MAX_BALANCE_CENTS:
        return BalanceLimitExceeded(f"account {operation.target} would exceed the largest balance")
    balances[account], balances[operation.target] = current - amount, target + amount
    return Outcome({"balance": current - amount, "target_balance": target + amount})

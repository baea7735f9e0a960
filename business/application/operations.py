"""The bank's rules: what an operation is, how it changes a running balance, whose account it may touch, and what
of it is recorded.

Whose: an account belongs to the client whose deposit or open created it (or, from before owners, to whom an
operator gave it). Only its owner debits it or reads it
(an operator reads any); to anyone else it is refused exactly as an unknown account is. Anyone may pay into it,
and is then answered without its balance.

No I/O here: the queue service (queue_service.py) leases the balances, applies a batch with apply_batch and
commits what it returns.
"""
from dataclasses import dataclass
from typing import NamedTuple

from business.application import holds
from business.application.errors import (
    AccountExists,
    AccountNotFound,
    AccountOwned,
    BalanceLimitExceeded,
    BankError,
    Forbidden,
    HoldClosed,
    HoldExceeded,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientFunds,
    TooManyHolds,
)

MAX_BALANCE_CENTS = holds.MAX_BALANCE_CENTS
REFUSALS = (AccountNotFound, AccountExists, AccountOwned, InsufficientFunds, BalanceLimitExceeded, HoldNotFound,
            HoldClosed, TooManyHolds, HoldExceeded, Forbidden)
# What only gives an account its owner: no money moves, no history entry.
OWNING = ("open", "give")
REFUSALS_BY_CODE = {refusal.code: refusal for refusal in REFUSALS}


@dataclass(frozen=True)
class Operation:
    kind: str                  # deposit | withdrawal | transfer | balance | open | give | hold | capture | release |
                               # expire
    account: str               # the account credited, debited, read or opened; the origin of a transfer or hold
    amount_cents: int = 0
    target: str | None = None
    operation_id: str = ""     # what the data server records it under
    key: str | None = None     # the client's Idempotency-Key: an earlier result may exist
    client: str = ""           # who asks: a client's name, or an operator's
    operator: bool = False     # the caller is an operator: it reads any account and moves no money
    new_owner: str | None = None   # give: the client an operator gives an account from before owners
    hold: str | None = None    # capture, release, expire: the hold's id
    expires_in: int = 0        # hold: seconds it is held for

    @property
    def keyed(self):
        return self.key is not None

    @property
    def request(self):
        """What the operation asks, to tell a retry from another request under the same key."""
        if self.kind == "hold":
            return f"hold {self.account} {self.target} {self.amount_cents} {self.expires_in}"
        if self.hold is not None:
            return f"{self.kind} {self.hold} {self.amount_cents}"
        return f"{self.kind} {self.account} {self.target or self.new_owner or '-'} {self.amount_cents}"

    @property
    def writes(self):
        return self.kind != "balance"

    @property
    def accounts(self):
        return (self.account, self.target) if self.target else (self.account,)


@dataclass(frozen=True)
class Outcome:
    result: dict               # {"balance": cents} and, for a transfer, {"target_balance": cents}; only the caller's
                               # own accounts' (a read's also {"owner"})
    replayed: bool = False


class AppliedBatch(NamedTuple):
    outcomes: list             # each operation's Outcome, or the BankError that refused it, in the batch's order
    balances: dict             # account -> its cents after the batch; None: it still does not exist
    new_owners: dict           # account -> its first owner, given in this batch (a deposit, an open or a give)
    records: list              # the operation records to commit: {"id", "request", "result", "keyed"}
    entries: list              # the history entries to commit, in the order they were applied (_entries)
    holds: list                # the holds placed or closed, each as the batch leaves it ([Hold])


def apply_batch(operations, leases, rules):
    """Apply operations in order to the leased balances, as an AppliedBatch; rules: the holds.HoldRules to apply
    them by. Each leased account's holds past their expiry are closed first."""
    balances = {account: lease.amount_cents for account, lease in leases.items()}
    owners = {account: lease.owner for account, lease in leases.items()}
    books = holds.Books(balances, owners, {account: {hold.id: hold for hold in lease.holds}
                                           for account, lease in leases.items()}, {})
    new_owners = {}
    earlier = {}
    for lease in leases.values():
        earlier.update(lease.recorded)
    outcomes, records, entries = [], [], []
    entries += holds.expire_due(books, rules)
    for operation in operations:
        first = earlier.get(operation.operation_id) if operation.keyed else None
        creates = operation.kind in ("deposit", "open") and balances[operation.account] is None
        hold_entries = []
        try:
            if first is not None:
                outcome = _replay(first, operation)
            elif operation.kind in holds.KINDS:
                result, hold_entries = holds.apply(operation, books, rules)
                outcome = Outcome(result)
            else:
                outcome = _apply_one(operation, books, rules)
        except BankError as refusal:
            outcome = refusal
        if isinstance(outcome, Outcome) and first is None and (creates or operation.kind == "give"):
            owner = operation.new_owner if operation.kind == "give" else operation.client
            owners[operation.account] = new_owners[operation.account] = owner
        outcomes.append(_without_others_balances(operation, outcome, owners))
        if first is not None:
            continue
        if operation.kind in holds.KINDS:
            entries += hold_entries
        elif isinstance(outcome, Outcome) and operation.writes and operation.kind not in OWNING:
            entries += _entries(operation, outcome.result)
        result = _recordable_result(operation, outcome)
        if result is not None:
            record = {"id": operation.operation_id, "request": operation.request, "result": result,
                      "keyed": operation.keyed}
            records.append(record)
            earlier[operation.operation_id] = record
    return AppliedBatch(outcomes, balances, new_owners, records, entries, list(books.changes.values()))


def owns(client, owner):
    """Whether client owns an account of owner (None: an account from before owners, which no client owns)."""
    return owner is not None and owner == client


def may_see(client, operator, owner):
    """Whether a caller (a client's name, an operator or not) may read an account of owner: its owner, or any
    operator."""
    return operator or owns(client, owner)


def _without_others_balances(operation, outcome, owners):
    """The outcome without the balance of any account the caller does not own (a pay-in into another's account)."""
    if not isinstance(outcome, Outcome):
        return outcome
    hidden = [] if may_see(operation.client, operation.operator, owners[operation.account]) else ["balance",
                                                                                                     "available"]
    if operation.target is not None and not may_see(operation.client, operation.operator, owners[operation.target]):
        hidden.append("target_balance")
    if not hidden:
        return outcome
    return Outcome({name: value for name, value in outcome.result.items() if name not in hidden}, outcome.replayed)


def _entries(operation, result):
    """The history entries of an applied write: {"account", "kind", "cents", "balance", "counterparty",
    "operation", "key"}, one for each account it changed."""
    def entry(account, kind, balance, counterparty=None):
        return {"account": account, "kind": kind, "cents": operation.amount_cents, "balance": balance,
                "counterparty": counterparty, "operation": operation.operation_id, "key": operation.key}

    if operation.kind != "transfer":
        return [entry(operation.account, operation.kind, result["balance"])]
    return [entry(operation.account, "transfer_out", result["balance"], operation.target),
            entry(operation.target, "transfer_in", result["target_balance"], operation.account)]


def _recordable_result(operation, outcome):
    """What the data server records for operation: every applied write, and a keyed write's refusal.

    A refusal is recorded too, because an earlier attempt under the same key may still be on its way to some
    server; without the record it could be applied after the client was told it was refused.
    """
    if not operation.writes or operation.kind == "expire":
        return None
    if isinstance(outcome, Outcome):
        return outcome.result
    if operation.keyed and isinstance(outcome, REFUSALS):
        return {"refused": outcome.code, "message": outcome.message}
    return None


def _replay(first, operation):
    """The first Outcome recorded under operation's key; the refusal recorded raised again, or a conflict if the
    key was used for another request."""
    if first["request"] != operation.request:
        raise IdempotencyConflict("this Idempotency-Key was used for another request")
    refused = first["result"].get("refused")
    if refused is not None:
        raise REFUSALS_BY_CODE[refused](first["result"]["message"])
    return Outcome(first["result"], replayed=True)


def _apply_one(operation, books, rules):
    """Apply one operation to the batch's holds.Books (its balances, owners and held holds) and return its Outcome;
    raise the BankError that refuses it."""
    balances, owners = books.balances, books.owners
    account, amount = operation.account, operation.amount_cents
    current = balances[account]
    if operation.operator and operation.kind not in ("balance", "give"):
        # An operator moves no money and opens nothing (bank_service.py refuses it first): whatever asks it.
        raise AccountNotFound(f"account {account} does not exist")
    if operation.kind == "open":
        if current is not None:
            raise AccountExists(f"account {account} exists already")
        balances[account] = 0
        return Outcome({"balance": 0})
    if operation.kind == "give":
        if current is None:
            raise AccountNotFound(f"account {account} does not exist")
        if owners[account] is not None:
            raise AccountOwned(f"account {account} has an owner already, for good")
        return Outcome({"balance": current})
    if operation.kind == "deposit":
        new_balance = (current or 0) + amount
        if new_balance > MAX_BALANCE_CENTS:
            raise BalanceLimitExceeded(f"account {account} would exceed the largest balance")
        balances[account] = new_balance
        return Outcome({"balance": new_balance})
    if operation.kind == "balance":
        allowed = may_see(operation.client, operation.operator, owners[account])
    else:
        allowed = owns(operation.client, owners[account])
    if current is None or not allowed:
        # Another's account is refused in the very words of an unknown one: its ids cannot be probed.
        raise AccountNotFound(f"account {account} does not exist")
    if operation.kind == "balance":
        return Outcome({"balance": current, "owner": owners[account],
                        "available": holds.spendable(books, account, rules)})
    target = balances.get(operation.target)
    if operation.kind == "transfer" and target is None:
        raise AccountNotFound(f"account {operation.target} does not exist")
    # A debit spends only what the account's held holds do not set aside.
    if holds.spendable(books, account, rules) < amount:
        raise InsufficientFunds(f"account {account} has not enough funds available")
    if operation.kind == "withdrawal":
        balances[account] = current - amount
        return Outcome({"balance": current - amount})
    if target + amount > MAX_BALANCE_CENTS:
        raise BalanceLimitExceeded(f"account {operation.target} would exceed the largest balance")
    balances[account], balances[operation.target] = current - amount, target + amount
    return Outcome({"balance": current - amount, "target_balance": target + amount})

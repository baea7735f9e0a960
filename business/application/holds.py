"""The bank's rules for holds: an amount of an account set aside for another account, until the target's owner
captures it (in whole or in part, the rest given back), either party's owner or an operator releases it, or it
expires.

A hold sets money aside without moving it: the origin's balance stays, what is available to spend falls. Only the
origin's owner places one; the target may be anyone's. Past its expiry a hold counts as expired wherever it is
read, and the first lock cycle on its origin from then on closes it (the bank's expiry, hold_expiry.py, sees that
one comes). No I/O here: operations.py applies a batch, this module its holds.
"""
from typing import NamedTuple

from business.application.errors import (
    AccountNotFound,
    BalanceLimitExceeded,
    Forbidden,
    HoldClosed,
    HoldExceeded,
    HoldNotFound,
    InsufficientFunds,
    TooManyHolds,
)
from business.application.ports import Hold
from shared.validation import operation_reference

KINDS = ("hold", "capture", "release", "expire")
MAX_BALANCE_CENTS = 10 ** 18
# Due holds one lock cycle closes at most, soonest first (the rest count as expired meanwhile, and the next cycles
# close them): a commit's holds and entries, and its etcd transaction, stay within their bounds.
EXPIRIES_PER_BATCH = 20


class HoldRules(NamedTuple):
    now_ms: int                     # the time the batch is applied at, Unix ms
    per_account: int                # holds one account may have held at once


class Books(NamedTuple):
    """What a batch has applied so far, which its hold operations read and change."""
    balances: dict                  # account -> cents; None: no such account
    owners: dict                    # account -> its owner
    held: dict                      # account -> {hold id: Hold}, its held holds as origin
    changes: dict                   # hold id -> Hold as the batch leaves it: placed or closed


def available(balance_cents, holds, now_ms):
    """What of a balance is not set aside by the held ones of holds still before their expiry."""
    return balance_cents - sum(hold.amount_cents for hold in holds if as_seen(hold, now_ms).state == "held")


def spendable(books, account, rules):
    """What of account's balance in books its held holds do not set aside at rules.now_ms."""
    return available(books.balances[account], books.held.get(account, {}).values(), rules.now_ms)


def as_seen(hold, now_ms):
    """The hold as the bank answers it at now_ms: held past its expiry is expired, closed or not yet."""
    if hold.state == "held" and hold.expires_at_ms <= now_ms:
        return hold._replace(state="expired")
    return hold


def expire_due(books, rules):
    """Close the leased accounts' held holds past their expiry, soonest first, at most EXPIRIES_PER_BATCH; their
    entries."""
    due = sorted((hold for held in books.held.values() for hold in held.values()
                  if hold.expires_at_ms <= rules.now_ms), key=lambda hold: (hold.expires_at_ms, hold.id))
    entries = []
    for hold in due[:EXPIRIES_PER_BATCH]:
        _close(books, hold._replace(state="expired", closed_at_ms=rules.now_ms))
        entries.append(_entry(hold.origin, "hold_expiry", hold.amount_cents, books.balances[hold.origin],
                              hold.target, f"expiry-{hold.id}", None))
    return entries


def apply(operation, books, rules):
    """Apply a hold operation to books: (its result, its entries); raise the BankError that refuses it."""
    if operation.kind == "hold":
        return _place(operation, books, rules)
    if operation.kind == "expire":
        # Its origin's due holds were closed as the batch began: nothing is left for it to do.
        return {"expired": operation.hold not in books.held.get(operation.account, {})}, []
    hold = books.held.get(operation.account, {}).get(operation.hold)
    if hold is not None and as_seen(hold, rules.now_ms).state != "held":
        hold = None         # past its expiry, not yet closed: a later cycle closes it
    origin_owner, target_owner = books.owners[operation.account], books.owners[operation.target]
    party = operation.client in (origin_owner, target_owner) and not operation.operator
    if operation.kind == "release":
        if not (party or operation.operator):
            raise HoldNotFound(f"hold {operation.hold} does not exist")
        if hold is None:
            raise HoldClosed(f"hold {operation.hold} is closed already")
        return _release(operation, books, hold, rules)
    if not party:
        raise HoldNotFound(f"hold {operation.hold} does not exist")
    if operation.client != target_owner:
        raise Forbidden("only the owner of a hold's target captures it")
    if hold is None:
        raise HoldClosed(f"hold {operation.hold} is closed already")
    return _capture(operation, books, hold, rules)


def _place(operation, books, rules):
    origin, target, amount = operation.account, operation.target, operation.amount_cents
    if books.balances[origin] is None or books.owners[origin] != operation.client or operation.operator:
        raise AccountNotFound(f"account {origin} does not exist")
    if books.balances[target] is None:
        raise AccountNotFound(f"account {target} does not exist")
    held = books.held.setdefault(origin, {})
    holding = sum(1 for hold in held.values() if as_seen(hold, rules.now_ms).state == "held")
    if holding >= rules.per_account:
        raise TooManyHolds(f"account {origin} has {holding} holds held, the most one account may")
    if spendable(books, origin, rules) < amount:
        raise InsufficientFunds(f"account {origin} has not enough funds available")
    # Its id is its placing operation's reference: a keyed retry places none anew, and its statement entry names it.
    hold = Hold(operation_reference(operation.operation_id), origin, target, amount,
                rules.now_ms + operation.expires_in * 1000, "held", 0, None, operation.client, books.owners[target])
    held[hold.id] = books.changes[hold.id] = hold
    entry = _entry(origin, "hold", amount, books.balances[origin], target, operation.operation_id, operation.key)
    return _result(hold, books, rules), [entry]


def _capture(operation, books, hold, rules):
    captured = operation.amount_cents or hold.amount_cents
    if captured > hold.amount_cents:
        raise HoldExceeded(f"hold {hold.id} sets aside less than that")
    if books.balances[hold.target] + captured > MAX_BALANCE_CENTS:
        raise BalanceLimitExceeded(f"account {hold.target} would exceed the largest balance")
    books.balances[hold.origin] -= captured
    books.balances[hold.target] += captured
    # Never below zero: a held hold's amount is in its origin's balance until it closes.
    assert books.balances[hold.origin] >= 0, f"a capture of {hold.id} would leave {hold.origin} below zero"
    closed = _close(books, hold._replace(state="captured", captured_cents=captured, closed_at_ms=rules.now_ms))
    op_id, key = operation.operation_id, operation.key
    entries = [_entry(hold.origin, "capture_out", captured, books.balances[hold.origin], hold.target, op_id, key)]
    if captured < hold.amount_cents:
        entries.append(_entry(hold.origin, "hold_release", hold.amount_cents - captured,
                              books.balances[hold.origin], hold.target, op_id, key))
    entries.append(_entry(hold.target, "capture_in", captured, books.balances[hold.target], hold.origin, op_id, key))
    return {**_result(closed, books, rules), "target_balance": books.balances[hold.target]}, entries


def _release(operation, books, hold, rules):
    closed = _close(books, hold._replace(state="released", closed_at_ms=rules.now_ms))
    entry = _entry(hold.origin, "hold_release", hold.amount_cents, books.balances[hold.origin], hold.target,
                   operation.operation_id, operation.key)
    return _result(closed, books, rules), [entry]


def _close(books, closed):
    del books.held[closed.origin][closed.id]
    books.changes[closed.id] = closed
    return closed


def _result(hold, books, rules):
    """What an operation on a hold answers (and records): the hold, and its origin's balance and what of it is
    available (operations.py leaves those out for a caller who may not see them)."""
    return {"hold": hold._asdict(), "balance": books.balances[hold.origin],
            "available": spendable(books, hold.origin, rules)}


def _entry(account, kind, cents, balance, counterparty, operation_id, key):
    return {"account": account, "kind": kind, "cents": cents, "balance": balance, "counterparty": counterparty,
            "operation": operation_id, "key": key}

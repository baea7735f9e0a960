"""The bank's use cases: deposit, withdrawal, balance, transfer and opening an account, each through its account's
queue; an account's statement, read from its history; and a client's list of its own accounts.

Every use case is asked by a Caller: a client, who owns the accounts it opened (operations.py says what it may do
with another's), or an operator, who reads any account and moves no money."""
import base64
import binascii
import dataclasses
import hashlib
import uuid
from dataclasses import dataclass
from typing import NamedTuple

from business.application.errors import AccountNotFound, ClientNotFound, Forbidden, InvalidRequest, ServiceUnavailable
from business.application.operations import Operation, may_see
from business.application.ports import AccountMissing, DataRefused, DataUnavailable, HistoryBehind
from shared.validation import is_account_id

MAX_STATEMENT_ENTRIES = 100
DEFAULT_STATEMENT_ENTRIES = 20
MAX_LISTED_ACCOUNTS = 100
DEFAULT_LISTED_ACCOUNTS = 20
_STATEMENT_CURSOR, _ACCOUNTS_CURSOR = "before:", "after:"


class Caller(NamedTuple):
    name: str                   # the client's (or operator's) name in CLIENT_TOKENS (OPERATOR_TOKENS)
    operator: bool = False


@dataclass(frozen=True)
class Receipt:
    account: str
    balance_cents: int | None   # None: the account is another's, whose balance the caller may not see
    amount_cents: int | None = None
    target: str | None = None
    target_balance_cents: int | None = None
    replayed: bool = False      # the first result of an earlier request with the same Idempotency-Key
    owner: str | None = None    # a read's: the account's owner


@dataclass(frozen=True)
class AccountList:
    accounts: list              # [(account, cents)] of the caller's own, in id order
    next_cursor: str | None     # for the next page; None: this page holds the last


@dataclass(frozen=True)
class Statement:
    account: str
    entries: list               # [HistoryEntry] as its reader may see them (_as_seen_by), newest first
    next_cursor: str | None     # for the next (older) page; None: this page holds the oldest entry kept


class BankService:
    def __init__(self, queue_service, history, accounts, max_amount_cents, clients=(),
                 new_operation_id=lambda: uuid.uuid4().hex):
        """clients: the names of the bank's clients, to whom an operator may give an account from before owners."""
        self._queues = queue_service
        self._history = history
        self._accounts = accounts
        self._clients = frozenset(clients)
        self._max_amount = max_amount_cents
        self._new_operation_id = new_operation_id

    def deposit(self, account, amount_cents, caller, idempotency_key=None):
        return self._move("deposit", account, amount_cents, caller, idempotency_key)

    def withdraw(self, account, amount_cents, caller, idempotency_key=None):
        return self._move("withdrawal", account, amount_cents, caller, idempotency_key)

    def transfer(self, origin, target, amount_cents, caller, idempotency_key=None):
        if origin == target:
            raise InvalidRequest("origin and target must be different accounts", code="same_account")
        return self._move("transfer", origin, amount_cents, caller, idempotency_key, target)

    def open(self, account, caller, idempotency_key=None):
        """A new account of caller's, with a zero balance; AccountExists if the id is taken, whoever holds it."""
        _refuse_operator(caller, "an operator opens no account")
        outcome = self._queues.submit(Operation("open", account, 0, None, self._operation_id(caller, idempotency_key),
                                                idempotency_key, caller.name))
        return Receipt(account, outcome.result["balance"], replayed=outcome.replayed, owner=caller.name)

    def give(self, account, client, caller, idempotency_key=None):
        """Give an account from before owners to client, for good: an operator's to do, and no money moves;
        AccountOwned if it has an owner already."""
        if not caller.operator:
            raise Forbidden("only an operator gives an account from before owners its owner")
        if client not in self._clients:
            raise ClientNotFound(f"{client} is not a client of this bank")
        outcome = self._queues.submit(Operation("give", account, 0, None, self._operation_id(caller, idempotency_key),
                                                idempotency_key, caller.name, True, client))
        return Receipt(account, outcome.result["balance"], replayed=outcome.replayed, owner=client)

    def balance(self, account, caller):
        """The account's balance and owner: its owner's, or an operator's, to read."""
        outcome = self._queues.submit(Operation("balance", account, client=caller.name, operator=caller.operator))
        return Receipt(account, outcome.result["balance"], owner=outcome.result["owner"])

    def accounts(self, caller, limit=None, cursor=None):
        """The caller's own accounts with their balances, in id order, a page at a time (cursor: the next_cursor
        of the page before)."""
        _refuse_operator(caller, "an operator owns no accounts: it reads one with GET /accounts/{accountId}")
        limit = _page_size(limit, DEFAULT_LISTED_ACCOUNTS, MAX_LISTED_ACCOUNTS)
        after = None if cursor is None else _cursor_value(cursor, _ACCOUNTS_CURSOR)
        try:
            page = self._accounts.page(caller.name, after, limit)
        except (DataUnavailable, DataRefused):
            raise ServiceUnavailable("data_unavailable", "the data server did not list the accounts; try again") \
                from None
        next_cursor = None if page.next_after is None else _cursor(_ACCOUNTS_CURSOR, page.next_after)
        return AccountList(page.accounts, next_cursor)

    def statement(self, account, caller, limit=None, cursor=None):
        """The account's history as caller may see it, newest first, a page at a time (limit entries,
        DEFAULT_STATEMENT_ENTRIES if None): cursor is the next_cursor of the page before."""
        limit = _page_size(limit, DEFAULT_STATEMENT_ENTRIES, MAX_STATEMENT_ENTRIES)
        before = None if cursor is None else _cursor_seq(cursor)
        try:
            # A client's statement is asked as its owner's: the data tier reads no entry of another's account.
            page = self._history.page(account, before, limit, None if caller.operator else caller.name)
        except AccountMissing:
            page = None
        except HistoryBehind as behind:
            raise ServiceUnavailable("history_unavailable", "the statement cannot be read now; try again",
                                     behind.retry_after) from None
        except (DataUnavailable, DataRefused):
            raise ServiceUnavailable("data_unavailable", "the data server did not give the history; try again") \
                from None
        if page is None or not may_see(caller.name, caller.operator, page.owner):
            raise AccountNotFound(f"account {account} does not exist")
        next_cursor = None if page.next_before is None else _cursor(_STATEMENT_CURSOR, page.next_before)
        return Statement(account, [_as_seen_by(caller, entry) for entry in page.entries], next_cursor)

    def _move(self, kind, account, amount_cents, caller, idempotency_key, target=None):
        _refuse_operator(caller, "an operator moves no money")
        if not 0 < amount_cents <= self._max_amount:
            raise InvalidRequest(f"the amount must be more than 0.00 and at most the maximum of "
                                 f"{self._max_amount // 100}.{self._max_amount % 100:02d}", code="invalid_amount")
        outcome = self._queues.submit(Operation(kind, account, amount_cents, target,
                                                self._operation_id(caller, idempotency_key), idempotency_key,
                                                caller.name))
        return Receipt(account, outcome.result.get("balance"), amount_cents, target,
                       outcome.result.get("target_balance"), outcome.replayed)

    def _operation_id(self, caller, idempotency_key):
        return self._new_operation_id() if idempotency_key is None else _keyed_id(caller.name, idempotency_key)


def _refuse_operator(caller, why):
    if caller.operator:
        raise Forbidden(why)


def _page_size(limit, default, most):
    limit = default if limit is None else limit
    if not 1 <= limit <= most:
        raise InvalidRequest(f"limit must be a whole number from 1 to {most}", code="invalid_limit")
    return limit


def _keyed_id(client, idempotency_key):
    """The operation id of a client's request with an Idempotency-Key: the same key of another client is another."""
    return f"{client}:{idempotency_key}"


def _as_seen_by(caller, entry):
    """The entry with the caller's own Idempotency-Key only, and its operation by a reference that names no client
    and no key (a transfer's two entries still share it): one client's statement tells nothing of another's requests.
    An operator sees the entry as recorded: a keyed operation's id is "client:key"."""
    if caller.operator:
        return entry
    own = entry.idempotency_key is not None and entry.operation == _keyed_id(caller.name, entry.idempotency_key)
    reference = None if entry.operation is None else hashlib.sha256(entry.operation.encode()).hexdigest()[:32]
    return dataclasses.replace(entry, operation=reference, idempotency_key=entry.idempotency_key if own else None)


def _cursor(kind, value):
    """An opaque cursor: kind (_STATEMENT_CURSOR, _ACCOUNTS_CURSOR) and where the next page starts."""
    return base64.urlsafe_b64encode(f"{kind}{value}".encode()).decode().rstrip("=")


def _cursor_value(cursor, kind):
    """What a cursor of _cursor(kind, ...) says (a string); InvalidRequest for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    value = text[len(kind):]
    if not (text.startswith(kind) and is_account_id(value)):
        raise InvalidRequest("cursor must be a next_cursor the bank gave", code="invalid_cursor")
    return value


def _cursor_seq(cursor):
    """The seq a statement's cursor stands for; InvalidRequest for anything else."""
    digits = _cursor_value(cursor, _STATEMENT_CURSOR)
    if not (digits.isdigit() and len(digits) <= 18 and int(digits) >= 1):
        raise InvalidRequest("cursor must be a next_cursor the bank gave", code="invalid_cursor")
    return int(digits)

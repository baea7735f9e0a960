"""The bank's use cases: deposit, withdrawal, balance, transfer, opening an account, and placing, capturing and
releasing a hold, each through its account's queue; an account's statement, read from its history; a client's list
of its own accounts; a hold, and an account's held holds.

Every use case is asked by a Caller: a client, who owns the accounts it opened (operations.py says what it may do
with another's), or an operator, who reads any account and moves no money."""
import base64
import binascii
import dataclasses
import time
import uuid
from dataclasses import dataclass
from typing import NamedTuple

from business.application import holds
from business.application.errors import (
    AccountNotFound,
    ClientNotFound,
    Forbidden,
    HoldNotFound,
    InvalidRequest,
    ServiceUnavailable,
)
from business.application.operations import Operation, may_see
from business.application.ports import (
    AccountLocked,
    AccountMissing,
    DataRefused,
    DataUnavailable,
    HistoryBehind,
    Hold,
    HoldMissing,
)
from shared.validation import is_account_id, operation_reference

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
    available_cents: int | None = None  # a read's: what of the balance its held holds do not set aside


class HoldLimits(NamedTuple):
    default_seconds: int        # a hold's life when its request names none
    max_seconds: int


DEFAULT_HOLD_LIMITS = HoldLimits(3600, 30 * 86400)


@dataclass(frozen=True)
class HoldReceipt:
    hold: Hold                  # as the bank answers it: held past its expiry is expired (holds.as_seen)
    balance_cents: int | None = None    # the origin's, if the caller may see it
    available_cents: int | None = None
    target_balance_cents: int | None = None     # a capture's: the target's, its owner's to see
    replayed: bool = False


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
                 new_operation_id=lambda: uuid.uuid4().hex, hold_store=None, hold_limits=None,
                 wall_clock=time.time):
        """clients: the names of the bank's clients, to whom an operator may give an account from before owners;
        hold_store: the HoldRepository holds are read from."""
        self._queues = queue_service
        self._history = history
        self._accounts = accounts
        self._holds, self._wall_clock = hold_store, wall_clock
        self._hold_limits = hold_limits or DEFAULT_HOLD_LIMITS
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
        return Receipt(account, outcome.result["balance"], owner=outcome.result["owner"],
                       available_cents=outcome.result.get("available"))

    def place_hold(self, origin, target, amount_cents, expires_in, caller, idempotency_key=None):
        """Set amount_cents of origin aside for target for expires_in seconds (None: the default), as a
        HoldReceipt; by origin's owner only."""
        _refuse_operator(caller, "an operator moves no money")
        if origin == target:
            raise InvalidRequest("origin and target must be different accounts", code="same_account")
        self._check_amount(amount_cents)
        seconds = self._hold_limits.default_seconds if expires_in is None else expires_in
        if not 1 <= seconds <= self._hold_limits.max_seconds:
            raise InvalidRequest(f"expires_in must be a whole number of seconds from 1 to "
                                 f"{self._hold_limits.max_seconds}", code="invalid_expires_in")
        outcome = self._queues.submit(Operation("hold", origin, amount_cents, target,
                                                self._operation_id(caller, idempotency_key), idempotency_key,
                                                caller.name, expires_in=seconds))
        return self._hold_receipt(outcome)

    def capture(self, hold_id, amount_cents, caller, idempotency_key=None):
        """Move a held hold's amount (or amount_cents of it, the rest given back) from its origin to its target;
        by the target's owner only."""
        _refuse_operator(caller, "an operator moves no money")
        if amount_cents is not None:
            self._check_amount(amount_cents)
        return self._close_hold("capture", hold_id, amount_cents or 0, caller, idempotency_key)

    def release(self, hold_id, caller, idempotency_key=None):
        """Give a held hold's amount back to its origin; by either account's owner or an operator."""
        return self._close_hold("release", hold_id, 0, caller, idempotency_key)

    def hold(self, hold_id, caller):
        """The hold as it is now: either account's owner's, or an operator's, to read."""
        return holds.as_seen(self._read_hold(hold_id, caller), self._now_ms())

    def held_holds(self, account, caller):
        """The account's holds still held, soonest expiring first: its owner's, or an operator's, to read."""
        try:
            seen = self._data_call(lambda: self._holds.of_account(account))
        except AccountMissing:
            seen = None
        if seen is None or not may_see(caller.name, caller.operator, seen.owner):
            raise AccountNotFound(f"account {account} does not exist")
        now_ms = self._now_ms()
        return sorted((hold for hold in seen.holds if holds.as_seen(hold, now_ms).state == "held"),
                      key=lambda hold: (hold.expires_at_ms, hold.id))

    def _close_hold(self, kind, hold_id, amount_cents, caller, idempotency_key):
        hold = self._read_hold(hold_id, caller)
        outcome = self._queues.submit(Operation(kind, hold.origin, amount_cents, hold.target,
                                                self._operation_id(caller, idempotency_key), idempotency_key,
                                                caller.name, caller.operator, hold=hold_id))
        return self._hold_receipt(outcome)

    def _read_hold(self, hold_id, caller):
        """The hold, if caller is one of its parties (the owners it was placed between) or an operator; to anyone
        else HoldNotFound, as for no such hold, before anything is queued, whatever the bank's state."""
        try:
            hold = self._data_call(lambda: self._holds.get(hold_id))
        except HoldMissing:
            hold = None
        if hold is None or not (caller.operator or caller.name in (hold.origin_owner, hold.target_owner)):
            raise HoldNotFound(f"hold {hold_id} does not exist")
        return hold

    @staticmethod
    def _data_call(read):
        try:
            return read()
        except AccountLocked:
            raise ServiceUnavailable("account_busy", "the account stayed busy; try again") from None
        except (DataUnavailable, DataRefused):
            raise ServiceUnavailable("data_unavailable", "the data server did not answer; try again") from None

    def _hold_receipt(self, outcome):
        result = outcome.result
        # The hold as the operation left it (a retry is told the first answer, as it was).
        return HoldReceipt(Hold(**result["hold"]), result.get("balance"),
                           result.get("available"), result.get("target_balance"), outcome.replayed)

    def _now_ms(self):
        return int(self._wall_clock() * 1000)

    def _check_amount(self, amount_cents):
        if not 0 < amount_cents <= self._max_amount:
            raise InvalidRequest(f"the amount must be more than 0.00 and at most the maximum of "
                                 f"{self._max_amount // 100}.{self._max_amount % 100:02d}", code="invalid_amount")

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
        self._check_amount(amount_cents)
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
    reference = None if entry.operation is None else operation_reference(entry.operation)
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

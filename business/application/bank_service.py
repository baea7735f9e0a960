"""The bank's use cases: deposit, withdrawal, balance and transfer, each through its account's queue, and an
account's statement, read from its history."""
import base64
import binascii
import dataclasses
import hashlib
import uuid
from dataclasses import dataclass

from business.application.errors import AccountNotFound, InvalidRequest, ServiceUnavailable
from business.application.operations import Operation
from business.application.ports import AccountMissing, DataRefused, DataUnavailable

MAX_STATEMENT_ENTRIES = 100
DEFAULT_STATEMENT_ENTRIES = 20
_CURSOR_PREFIX = "before:"


@dataclass(frozen=True)
class Receipt:
    account: str
    balance_cents: int
    amount_cents: int | None = None
    target: str | None = None
    target_balance_cents: int | None = None
    replayed: bool = False      # the first result of an earlier request with the same Idempotency-Key


@dataclass(frozen=True)
class Statement:
    account: str
    entries: list               # [HistoryEntry] as its reader may see them (_as_seen_by), newest first
    next_cursor: str | None     # for the next (older) page; None: this page holds the oldest entry kept


class BankService:
    def __init__(self, queue_service, history, max_amount_cents, new_operation_id=lambda: uuid.uuid4().hex):
        self._queues = queue_service
        self._history = history
        self._max_amount = max_amount_cents
        self._new_operation_id = new_operation_id

    def deposit(self, account, amount_cents, client, idempotency_key=None):
        return self._move("deposit", account, amount_cents, client, idempotency_key)

    def withdraw(self, account, amount_cents, client, idempotency_key=None):
        return self._move("withdrawal", account, amount_cents, client, idempotency_key)

    def transfer(self, origin, target, amount_cents, client, idempotency_key=None):
        if origin == target:
            raise InvalidRequest("origin and target must be different accounts", code="same_account")
        return self._move("transfer", origin, amount_cents, client, idempotency_key, target)

    def balance(self, account):
        outcome = self._queues.submit(Operation("balance", account))
        return Receipt(account, outcome.result["balance"])

    def statement(self, account, client, limit=None, cursor=None):
        """The account's history as client may see it, newest first, a page at a time (limit entries,
        DEFAULT_STATEMENT_ENTRIES if None): cursor is the next_cursor of the page before."""
        limit = DEFAULT_STATEMENT_ENTRIES if limit is None else limit
        if not 1 <= limit <= MAX_STATEMENT_ENTRIES:
            raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_STATEMENT_ENTRIES}",
                                 code="invalid_limit")
        before = None if cursor is None else _cursor_seq(cursor)
        try:
            page = self._history.page(account, before, limit)
        except AccountMissing:
            raise AccountNotFound(f"account {account} does not exist") from None
        except (DataUnavailable, DataRefused):
            raise ServiceUnavailable("data_unavailable", "the data server did not give the history; try again") \
                from None
        next_cursor = None if page.next_before is None else _cursor(page.next_before)
        return Statement(account, [_as_seen_by(client, entry) for entry in page.entries], next_cursor)

    def _move(self, kind, account, amount_cents, client, idempotency_key, target=None):
        if not 0 < amount_cents <= self._max_amount:
            raise InvalidRequest(f"the amount must be more than 0.00 and at most the maximum of "
                                 f"{self._max_amount // 100}.{self._max_amount % 100:02d}", code="invalid_amount")
        operation_id = _keyed_id(client, idempotency_key) if idempotency_key is not None else self._new_operation_id()
        outcome = self._queues.submit(Operation(kind, account, amount_cents, target, operation_id, idempotency_key))
        return Receipt(account, outcome.result["balance"], amount_cents, target,
                       outcome.result.get("target_balance"), outcome.replayed)


def _keyed_id(client, idempotency_key):
    """The operation id of a client's request with an Idempotency-Key: the same key of another client is another."""
    return f"{client}:{idempotency_key}"


def _as_seen_by(client, entry):
    """The entry with client's own Idempotency-Key only, and its operation by a reference that names no client and
    no key (a transfer's two entries still share it): one client's statement tells nothing of another's requests."""
    own = entry.idempotency_key is not None and entry.operation == _keyed_id(client, entry.idempotency_key)
    reference = None if entry.operation is None else hashlib.sha256(entry.operation.encode()).hexdigest()[:32]
    return dataclasses.replace(entry, operation=reference, idempotency_key=entry.idempotency_key if own else None)


def _cursor(seq):
    """An opaque cursor for the entries before seq."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def _cursor_seq(cursor):
    """The seq a cursor of _cursor() stands for; InvalidRequest for anything else."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    digits = text[len(_CURSOR_PREFIX):]
    if not (text.startswith(_CURSOR_PREFIX) and digits.isascii() and digits.isdigit() and len(digits) <= 18
            and int(digits) >= 1):
        raise InvalidRequest("cursor must be a next_cursor the bank gave", code="invalid_cursor")
    return int(digits)

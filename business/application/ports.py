"""The ports the application layer needs from the data tier, and how their adapters may fail.

Adapters (business/infra/) implement LockRepository, AmountRepository, HistoryRepository, AccountRepository and
HoldRepository and raise only these exceptions; OperationQueue is what BankService submits to (QueueService, or
business/infra/batcher_client.py).
"""
import abc
from dataclasses import dataclass, field
from typing import NamedTuple


class DataUnavailable(Exception):
    """The data tier did not answer in time, refused the connection or failed."""


class DataRefused(Exception):
    """The data tier refused a request this adapter built: a bug, or a lease that ran out."""

    def __init__(self, status, code, message):
        super().__init__(f"data server answered {status}: {code}: {message}")
        self.status, self.code = status, code


class DataTierFull(Exception):
    """The data tier has no room for the write: it was refused, nothing applied; retry_after in seconds."""

    def __init__(self, retry_after):
        super().__init__(self.__doc__)
        self.retry_after = retry_after


class IdempotencyStoreFull(DataTierFull):
    """The data tier holds as many operation records as it may: the commit was refused, nothing applied."""


class AccountLocked(Exception):
    """Someone else holds the account's lease, or earlier requests wait for it."""

    def __init__(self, account, retry_after):
        super().__init__(f"account {account} is locked")
        self.account, self.retry_after = account, retry_after


class DataStoreFull(DataTierFull):
    """The data tier's store takes no more writes until an operator makes room: nothing was applied."""


class HistoryBehind(DataTierFull):
    """The data tier cannot keep up with the history now (its entries wait for the statement store, or its history
    file lags): a write is refused, nothing applied, and a statement cannot be read."""


class HoldsAtCap(DataTierFull):
    """The data tier holds as many holds as it may: the commit was refused, nothing applied."""


class AccountMissing(Exception):
    pass


class HoldMissing(Exception):
    """No hold of that id is kept."""


class HoldIdTaken(Exception):
    """The data tier keeps a hold of that id already (an Idempotency-Key used again for a new hold once its record
    had expired), or not as the commit found it: nothing was applied."""

    def __init__(self, hold_id):
        super().__init__(f"hold {hold_id} is taken")
        self.hold_id = hold_id


class LeaseLost(Exception):
    """A lease of the commit expired or was taken over: nothing was applied."""


class OperationConflict(Exception):
    """An operation id of the commit is recorded for another request: nothing was applied."""


class Hold(NamedTuple):
    """An amount of origin set aside for target until it is captured, released or expires (holds.py)."""
    id: str
    origin: str
    target: str
    amount_cents: int
    expires_at_ms: int              # Unix ms
    state: str                      # held | captured | released | expired
    captured_cents: int             # moved to target; 0 unless captured
    closed_at_ms: int | None        # None while held
    origin_owner: str               # the client who placed it
    target_owner: str | None        # the target's owner when it was placed


class DueHold(NamedTuple):
    id: str
    origin: str


@dataclass(frozen=True)
class Lease:
    account: str
    token: int
    amount_cents: int | None        # None: the account does not exist yet
    recorded: dict = field(default_factory=dict)   # operation id -> {"request", "result"}, as asked by lookup
    owner: str | None = None        # the client the account belongs to; None: no account, or one from before owners
    holds: tuple = ()               # its held holds ([Hold]), as origin


class AccountBalance(NamedTuple):
    """An account as read without a lease."""
    cents: int
    owner: str | None
    holds: tuple = ()               # its held holds, as origin


class LeasedWrite(NamedTuple):
    """One account's new balance in a commit, under the lease that allows it."""
    cents: int
    lease: Lease
    owner: str | None = None        # the owner the commit gives the account it creates


@dataclass(frozen=True)
class HistoryEntry:
    seq: int                        # 1, 2, 3, ... in the account's own order
    kind: str                       # deposit | withdrawal | transfer_in | transfer_out | adjustment
    amount_cents: int               # positive; an adjustment's is signed
    balance_cents: int              # after it
    counterparty: str | None        # the other account of a transfer
    operation: str | None           # the data tier's operation id (a transfer's two entries share it)
    idempotency_key: str | None
    at: str                         # RFC 3339, UTC


@dataclass(frozen=True)
class HistoryPage:
    entries: list                   # [HistoryEntry], newest first
    next_before: int | None         # the seq to read before for older entries; None: none are left
    owner: str | None = None        # the account's owner


@dataclass(frozen=True)
class AccountsPage:
    accounts: list                  # [(account, cents)] of one owner, in account id order
    next_after: str | None          # the account to list after for the next page; None: none are left


@dataclass(frozen=True)
class CommitResult:
    replayed: bool      # True: the data server had applied this very commit before (a retry); first results
    results: list


class LockRepository(abc.ABC):
    @abc.abstractmethod
    def acquire_all(self, accounts, lookup=(), wait=0.0):
        """Lease every one of accounts at once and return {account: Lease}; the lookup's records come with them.

        Raise AccountLocked, leasing none, if one is still held (or waited for by earlier requests) after `wait`
        seconds. Nothing is held while waiting.
        """

    @abc.abstractmethod
    def release(self, lease):
        """Give the lease back; one already expired or taken over is no error."""


class AmountRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, account, wait=0.0):
        """Return the account's AccountBalance; raise AccountMissing, or AccountLocked if still held after `wait` s."""

    @abc.abstractmethod
    def commit(self, writes, operations, release=(), entries=(), on_resend=lambda: None, holds=()):
        """Write {account: LeasedWrite} all or nothing, record operations, release those leases and `release`, and
        place or close holds ([Hold] as each is to be, its origin among the writes).

        A write's owner is recorded for the account it creates.

        operations: [{"id", "request", "result", "keyed"}]; release: leases given back unwritten; entries: the
        history entries of the writes, in the order applied ({"account", "kind", "cents", "balance",
        "counterparty", "operation", "key"}). Raise LeaseLost, OperationConflict or DataTierFull (HoldsAtCap: no room
        for the holds placed), applying nothing.
        on_resend is called once if an unanswered commit is to be sent again.
        """


class HistoryRepository(abc.ABC):
    @abc.abstractmethod
    def page(self, account, before, limit, owner=None):
        """Up to limit of the account's entries with a seq below before (None: the newest), as a HistoryPage;
        raise AccountMissing, also if owner is given and the account is not owner's."""


class AccountRepository(abc.ABC):
    @abc.abstractmethod
    def page(self, owner, after, limit):
        """Up to limit of owner's accounts with an id after `after` (None: from the first), as an AccountsPage."""


class HoldRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, hold_id):
        """The Hold of that id as the data tier keeps it now; raise HoldMissing if there is none."""

    @abc.abstractmethod
    def of_account(self, account):
        """The account's AccountBalance with its held holds (read without a lease); raise AccountMissing."""

    @abc.abstractmethod
    def due(self, limit):
        """Up to limit held holds past their expiry by the data tier's clock, soonest first, as [DueHold]."""


class OperationQueue(abc.ABC):
    """Where the bank's use cases send every operation: QueueService in this process, or the server's batcher."""

    @abc.abstractmethod
    def submit(self, operation):
        """Apply operation in a coming lock cycle; return its Outcome or raise its BankError."""


class QueueObserver:
    """What the queue service reports as it works, for metrics; this one takes no notice."""

    def waiting(self, change):
        """Operations waiting in the queue went up or down by change."""

    def lock_cycle(self, operations):
        """A lock cycle started for a batch of that many operations (balance reads alone take none)."""

    def retry(self):
        """A lock request found its accounts held and will be sent again after a pause."""

"""The seam between the data server's HTTP layer and its stores: what a store does, what it answers, how it refuses.

Both stores (data/embedded/store.py, data/etcd/store.py) implement Store and raise only StoreError subclasses;
tests/integration/test_store_contract.py holds them to the same contract. Nothing here knows of HTTP, a journal
or etcd.
"""
import math
from typing import NamedTuple, Protocol


class Write(NamedTuple):
    """One account's new balance in a commit."""
    cents: int
    token: int                  # the writer's lease on the account
    owner: str | None = None    # the client the account belongs to: recorded if it has none yet, else must be its own


class Grant(NamedTuple):
    """One lease of a lock set."""
    account: str
    token: int                  # the fencing token: only grows, never repeats
    cents: int | None           # the balance now; None if the account does not exist yet
    owner: str | None = None    # the client the account belongs to; None: no account, or one from before owners
    holds: tuple = ()           # its held holds (data/holds.py), as origin


class LockGrant(NamedTuple):
    token: int
    ttl: float                  # seconds the lease lives from now without renewal
    cents: int | None
    recorded: dict              # operation id -> {"request", "result"}, for the ids asked about
    owner: str | None = None
    holds: tuple = ()


class AccountView(NamedTuple):
    """An account as read without a lease."""
    cents: int
    owner: str | None           # None: an account from before owners
    holds: tuple = ()           # its held holds, as origin


class LocksGrant(NamedTuple):
    grants: list                # [Grant], in the order the accounts were asked for
    ttl: float
    recorded: dict


class CommitOutcome(NamedTuple):
    replayed: bool              # True: this very commit was applied before and nothing was applied now
    results: list               # each operation's result, the first ones if replayed
    entries: list = []          # the history entries it recorded, numbered (none if replayed)


class LeaseView(NamedTuple):
    account: str
    holder: str
    token: int
    seconds_left: float


class BankView(NamedTuple):
    total_cents: int
    accounts: int
    waiting: int
    lease_count: int
    leases: list                # [LeaseView], soonest ending first


class Counts(NamedTuple):
    accounts: int
    leases: int                 # live ones
    waiting: int                # requests waiting for a held account
    idempotency_records: int
    retry_records: int


class HistoryPage(NamedTuple):
    entries: list               # the account's entries (data/history.py), newest first
    next_before: int | None     # the seq to ask before for the page after this one; None: this was the oldest
    owner: str | None = None    # the account's owner


class AccountsPage(NamedTuple):
    accounts: list              # [(account, cents)] of one owner, in account id order
    next_after: str | None      # the account to list after for the next page; None: this was the last


class DueHold(NamedTuple):
    id: str
    origin: str
    expires_at: int             # Unix ms


class Stats(NamedTuple):
    """A store's upkeep; None where the store has no such thing (etcd keeps no journal, the embedded store no
    relay)."""
    compactions: int | None = None
    compaction_copy_seconds: float | None = None    # how long the last compaction's copy held writes back
    compaction_switch_seconds: float | None = None  # how long its switch to the new file held writes back
    history_backlog: int | None = None          # history entries etcd holds, waiting for the relay
    relaying: bool = False                      # the store relays its history to a statement store
    relay: str | None = None                    # the data server relaying them to the statement store now
    relay_lag_seconds: float | None = None      # how old the oldest entry of its last batch was when moved
    relay_alarm: str | None = None              # why this data server stopped relaying, if it did


class Store(Protocol):
    """Balances, leased and fenced locks with FIFO waiting lines, atomic commits and operation records."""

    def lock(self, business, account, token=None, lookup=(), wait=0.0) -> LockGrant:
        """Grant a lease on account, or renew the caller's own (token); LockHeld if still held after `wait` s."""

    def lock_all(self, business, accounts, lookup=(), wait=0.0, call=None, answer_by=math.inf) -> LocksGrant:
        """Lease every one of accounts at once, or none, waiting in every account's line at once.

        call: the caller's id for this request, the same on every data server it is sent to: if the accounts are
        leased to this business under this call already (an attempt its caller gave up on), that grant is the
        answer. answer_by: time.monotonic() after which the caller no longer waits: nothing is taken after it
        (CallerGone), and a grant finished after it is given back.
        """

    def unlock(self, business, account, token) -> None:
        """Give the caller's lease back; NotLockHolder if it is not the caller's live lease."""

    def read(self, business, account, token=None, wait=0.0) -> AccountView:
        """The account's cents and owner: the holder reads with its token, anyone else waits its turn as in lock()."""

    def commit(self, business, writes, operations=(), unlock=False, release=None, entries=None,
               holds=()) -> CommitOutcome:
        """Apply writes {account: Write} all or nothing, with operations recorded and holds (data/holds.py) placed or
        closed.

        A write's owner is recorded with it if the account has none yet, and stays the account's for good; a write
        naming another owner than the account's is OwnerConflict.

        operations: [{"id", "request", "result", "keyed"}]; if every id is recorded already for the same request,
        nothing is applied and the first results come back; a partial or different match is OperationConflict.
        release: {account: token} of leases given back unwritten once the commit is through. entries: {account:
        [history entry]} (data/history.py), each account's checked against its writes; they are numbered and
        recorded with the commit (a written account without any gets an adjustment), a replay records none.
        holds: each hold as it is to be, its origin among the writes: placed (HoldConflict if its id is taken) or
        closed (HoldConflict unless it is held, as placed); HoldsFull if more would be held than the store may hold;
        HoldsExceedBalance if a written balance would be below what its held holds set aside.
        A closed hold is kept, to be read by its id, DATA_HOLD_RETENTION.
        """

    def hold(self, hold_id) -> dict:
        """The hold of that id as it is now; UnknownHold if there is none (or a closed one is past keeping)."""

    def due_holds(self, now_ms, limit) -> list:
        """Up to limit held holds whose expiry is at or before now_ms, as [DueHold], soonest first."""

    def history(self, account, before=None, limit=20, owner=None) -> HistoryPage:
        """Up to limit of the account's committed entries with a seq below before, newest first; no lock needed.
        owner: only if the account is owner's, else UnknownAccount, as for no account, before any entry is read."""

    def accounts(self, owner, after=None, limit=20) -> AccountsPage:
        """Up to limit of owner's accounts with an id after `after`, in id order, with their balances."""

    def view(self, most_leases) -> BankView:
        """The bank at a glance, with up to most_leases live leases, soonest ending first."""

    def counts(self) -> Counts:
        """How many accounts, live leases, waiting requests and records there are now."""

    def stats(self) -> Stats:
        """The store's upkeep; StorageFailed once the store can no longer vouch for what it holds."""

    def close(self) -> None:
        """Make everything acknowledged durable and let go of files and connections."""


class StoreError(Exception):
    """A store's refusal: nothing was applied, unless the error says the outcome is unknown."""

    retry_after = None          # seconds after which trying again may succeed; None: it would not


class LockHeld(StoreError):
    def __init__(self, account, holder, remaining):
        super().__init__(f"account {account} is locked by {holder}")
        self.account, self.holder, self.remaining = account, holder, remaining

    @property
    def retry_after(self):
        return self.remaining


class CallerGone(StoreError):
    """The caller stopped waiting for the answer before it could be given: nothing was taken, or it was given back."""

    def __init__(self, accounts):
        super().__init__(f"the caller's deadline passed before the locks on {', '.join(accounts)} could be answered")


class NotLockHolder(StoreError):
    """The caller's lease is gone, expired or was never its own."""

    def __init__(self, business, account, token):
        super().__init__(f"no live lease on {account} with token {token} for {business}")
        self.business, self.account, self.token = business, account, token


class UnknownAccount(StoreError):
    def __init__(self, account):
        super().__init__(f"account {account} does not exist")
        self.account = account


class OperationConflict(StoreError):
    """Some of a commit's operation ids are recorded already, but not all of them as this same request."""


class OwnerConflict(StoreError):
    """A commit names an owner other than the one its account has: nothing was applied."""

    def __init__(self, account):
        super().__init__(f"account {account} belongs to another owner")
        self.account = account


class UnknownHold(StoreError):
    def __init__(self, hold_id):
        super().__init__(f"hold {hold_id} does not exist")
        self.hold_id = hold_id


class HoldConflict(StoreError):
    """A commit places a hold whose id is taken, or closes one that is not held as placed: nothing was applied."""

    def __init__(self, hold_id, why):
        super().__init__(f"hold {hold_id} cannot be so: {why}")
        self.hold_id = hold_id


class HoldsExceedBalance(StoreError):
    """A commit would leave an account's balance below what its held holds set aside: nothing was applied."""

    def __init__(self, account):
        super().__init__(f"account {account} would hold less than its held holds set aside")
        self.account = account


class HoldsFull(StoreError):
    """Placing the commit's holds would hold more than the store's cap: nothing was applied."""

    retry_after = 5


class HistoryMismatch(StoreError):
    """A commit's history entries do not add up to the balances it writes: nothing was applied."""


class HistoryUnavailable(StoreError):
    """The history cannot be read (or kept up with) now; the balances and the journal are unaffected."""

    retry_after = 1


class RecordsFull(StoreError):
    """Recording the commit's operations would pass their cap; nothing was applied."""

    def __init__(self, kind, retry_after):
        super().__init__(f"the {kind} records are at their cap")
        self.kind, self.retry_after = kind, retry_after


class WriteFailed(StoreError):
    """A write could not be stored and was taken back out again: nothing was applied."""

    retry_after = 1


class StorageFailed(StoreError):
    """Storage failed in a way that leaves what is on disk unknown; nothing is acknowledged until a restart."""

    retry_after = 5


class StoreFull(StoreError):
    """The store's cluster refuses writes: its database is at its quota. Nothing was applied."""

    retry_after = 30


class StoreUnavailable(StoreError):
    """The store's cluster did not answer: what a write sent to it did is unknown."""

    retry_after = 1

"""Hand-written in-memory fakes of the repositories, with the data server's rules."""
import threading

from business.application.ports import (
    AccountBalance,
    AccountLocked,
    AccountMissing,
    AccountRepository,
    AccountsPage,
    AmountRepository,
    CommitResult,
    DataStoreFull,
    DataUnavailable,
    DueHold,
    HistoryEntry,
    HistoryPage,
    HistoryRepository,
    HoldIdTaken,
    HoldMissing,
    HoldRepository,
    IdempotencyStoreFull,
    Lease,
    LeaseLost,
    LockRepository,
    OperationConflict,
)

SIGN = {"deposit": 1, "transfer_in": 1, "capture_in": 1, "withdrawal": -1, "transfer_out": -1, "capture_out": -1,
        "hold": 0, "hold_release": 0, "hold_expiry": 0}


class FakeDataServer:
    """Accounts, leases and recorded operations, plus switches to make it busy, slow or down."""

    def __init__(self, accounts=None, key_limit=None, owner="c"):
        self.accounts = dict(accounts or {})
        self.owners = {account: owner for account in self.accounts}    # the accounts given are owner's
        self.key_limit = key_limit       # keyed operation records held at most, as DATA_OPERATION_LIMIT
        self.leases = {}                 # account -> token
        self.operations = {}
        self.next_token = 0
        self.acquired = []               # accounts in the order they were locked
        self.lock_requests = []          # the accounts of each lock request, granted or not
        self.commits = []
        self.history = {}                # account -> [HistoryEntry], oldest first
        self.holds = {}                  # hold id -> Hold, as it is now
        self.released = []
        self.reads = []                  # the account of each balance read asked for, answered or not
        self.locked_by_others = {}       # account -> attempts still refused with 423 (None: forever)
        self.down = False
        self.full = False                # as a data tier at etcd's quota: every write refused, nothing applied
        self.fail_commit = None          # an exception class to raise from the next commit, applying nothing
        self.lose_answers = 0            # commits still to be applied whose answer is lost (DataUnavailable)
        self.gate = None                 # an Event that the next acquire waits on
        self.acquire_entered = threading.Event()
        self.mutex = threading.Lock()

    def check_up(self):
        if self.down:
            raise DataUnavailable("fake data server is down")

    def check_room(self):
        """Writes only: reads and releases are served by a full store."""
        if self.full:
            raise DataStoreFull(30)

    def expire_leases(self):
        """As LOCK_TTL passing on the data server: every lease ends (the fake's never do by themselves)."""
        with self.mutex:
            self.leases.clear()

    def recorded_results(self, operations):
        """As the data server: None if no operation id is recorded; the first results if every one is, for the
        same request; OperationConflict if only some are, or for another request."""
        recorded = [self.operations.get(op["id"]) for op in operations]
        if not any(recorded):
            return None
        if all(rec is not None and rec["request"] == op["request"] for rec, op in zip(recorded, operations)):
            return [rec["result"] for rec in recorded]
        raise OperationConflict("an operation id of this commit is recorded for another request")

    def held_of(self, account):
        return tuple(hold for hold in self.holds.values() if hold.origin == account and hold.state == "held")

    def give_back(self, lease, released=True):
        if self.leases.get(lease.account) == lease.token:
            del self.leases[lease.account]
            if released:
                self.released.append(lease.account)


class FakeLocks(LockRepository):
    def __init__(self, server):
        self.server = server

    def acquire_all(self, accounts, lookup=(), wait=0.0):
        server = self.server
        server.check_up()
        server.check_room()
        server.acquire_entered.set()
        gate, server.gate = server.gate, None
        if gate is not None:
            gate.wait(10)
        with server.mutex:
            server.lock_requests.append(tuple(accounts))
            for account in accounts:
                left = server.locked_by_others.get(account, 0)
                if left is None or left > 0:
                    if left is not None:
                        server.locked_by_others[account] = left - 1
                    raise AccountLocked(account, 0.5)
            recorded = {op_id: server.operations[op_id] for op_id in lookup if op_id in server.operations}
            if any(account in server.leases for account in accounts):
                # As the data server: a lease never given back holds its account (the fake's never expire).
                raise AccountLocked(next(a for a in accounts if a in server.leases), 0.5)
            leases = {}
            for account in sorted(accounts):
                server.next_token += 1
                server.leases[account] = server.next_token
                server.acquired.append(account)
                leases[account] = Lease(account, server.next_token, server.accounts.get(account), recorded,
                                        server.owners.get(account), server.held_of(account))
            return leases

    def release(self, lease):
        self.server.check_up()
        with self.server.mutex:
            self.server.give_back(lease)


class FakeAmounts(AmountRepository):
    def __init__(self, server):
        self.server = server

    def get(self, account, wait=0.0):
        server = self.server
        server.reads.append(account)
        server.check_up()
        with server.mutex:
            if account in server.locked_by_others and server.locked_by_others[account] is None:
                raise AccountLocked(account, 0.5)
            if account not in server.accounts:
                raise AccountMissing(account)
            return AccountBalance(server.accounts[account], server.owners.get(account), server.held_of(account))

    def commit(self, writes, operations, release=(), entries=(), on_resend=lambda: None, holds=()):
        server = self.server
        server.check_up()
        server.check_room()
        if server.fail_commit is not None:
            failure, server.fail_commit = server.fail_commit, None
            raise failure("fake commit failure")
        with server.mutex:
            first_results = server.recorded_results(operations)
            if first_results is not None:
                # This very commit was applied before (its answer was lost): the first results, nothing applied
                # again, its leases given back.
                for write in writes.values():
                    server.give_back(write.lease, released=False)
                for lease in release:
                    server.give_back(lease)
                result = CommitResult(True, first_results)
            else:
                result = self._apply(writes, operations, release, entries, holds)
        if server.lose_answers:
            server.lose_answers -= 1
            raise DataUnavailable("the commit's answer was lost")
        return result

    def _apply(self, writes, operations, release, entries, holds):
        """Check the leases, the holds and the records' room, apply and record; with the server's mutex held."""
        server = self.server
        keyed = sum(1 for op in (*server.operations.values(), *operations) if op["keyed"])
        if server.key_limit is not None and keyed > server.key_limit:
            raise IdempotencyStoreFull(60)
        for account, write in writes.items():
            if server.leases.get(account) != write.lease.token:
                raise LeaseLost(account)
            # As the data server: an account's owner is for good.
            assert write.owner is None or server.owners.get(account) in (None, write.owner), account
        for hold in holds:
            # As the data server: a hold is placed once and closed once, as placed, its origin written.
            before = server.holds.get(hold.id)
            if before is not None and hold.state == "held":
                raise HoldIdTaken(hold.id)
            assert hold.origin in writes and (before is None) == (hold.state == "held"), hold
            assert before is None or (before.state == "held" and before.amount_cents == hold.amount_cents), hold
        numbered = self._numbered(writes, entries)
        for entry_account, entry in numbered:
            server.history.setdefault(entry_account, []).append(entry)
        for account, write in writes.items():
            server.accounts[account] = write.cents
            if write.owner is not None:
                server.owners.setdefault(account, write.owner)
            del server.leases[account]
        for hold in holds:
            server.holds[hold.id] = hold
        for account in writes:
            # As the data server: no balance below what its held holds set aside.
            assert server.accounts[account] >= sum(h.amount_cents for h in server.held_of(account)), account
        for op in operations:
            server.operations[op["id"]] = op
        for lease in release:
            server.give_back(lease)
        server.commits.append({account: write.cents for account, write in writes.items()})
        return CommitResult(False, [op["result"] for op in operations])

    def _numbered(self, writes, entries):
        """As the data server: every entry of a written account, each following from the balance before it and
        the last ending at the balance written; numbered on from the account's last."""
        balances = {account: self.server.accounts.get(account) or 0 for account in writes}
        numbered = []
        for entry in entries:
            account = entry["account"]
            assert account in writes, f"an entry of {account}, which the commit does not write"
            assert balances[account] + SIGN[entry["kind"]] * entry["cents"] == entry["balance"], entry
            balances[account] = entry["balance"]
            seq = len(self.server.history.get(account, [])) + 1 + sum(1 for a, _ in numbered if a == account)
            numbered.append((account, HistoryEntry(seq, entry["kind"], entry["cents"], entry["balance"],
                                                   entry["counterparty"], entry["operation"], entry["key"],
                                                   "2026-12-01T00:00:00.000Z")))
        for account, write in writes.items():
            assert balances[account] == write.cents, f"the entries of {account} do not end at its balance written"
        return numbered


class FakeHistory(HistoryRepository):
    def __init__(self, server):
        self.server = server

    def page(self, account, before, limit, owner=None):
        self.server.check_up()
        if account not in self.server.accounts or owner not in (None, self.server.owners.get(account)):
            raise AccountMissing(account)
        older = [e for e in reversed(self.server.history.get(account, [])) if before is None or e.seq < before]
        page = older[:limit]
        return HistoryPage(page, page[-1].seq if len(page) == limit and page[-1].seq > 1 else None,
                           self.server.owners.get(account))


class FakeAccounts(AccountRepository):
    def __init__(self, server):
        self.server = server

    def page(self, owner, after, limit):
        self.server.check_up()
        owned = sorted(a for a, o in self.server.owners.items() if o == owner and (after is None or a > after))[:limit]
        return AccountsPage([(account, self.server.accounts[account]) for account in owned],
                            owned[-1] if len(owned) == limit else None)


class FakeHolds(HoldRepository):
    def __init__(self, server, clock_ms):
        """clock_ms: the data tier's clock, in Unix ms, that the due holds are due by."""
        self.server, self.clock_ms = server, clock_ms

    def get(self, hold_id):
        self.server.check_up()
        if hold_id not in self.server.holds:
            raise HoldMissing(hold_id)
        return self.server.holds[hold_id]

    def of_account(self, account):
        return FakeAmounts(self.server).get(account)

    def due(self, limit):
        self.server.check_up()
        due = sorted((hold for hold in self.server.holds.values()
                      if hold.state == "held" and hold.expires_at_ms <= self.clock_ms()),
                     key=lambda hold: (hold.expires_at_ms, hold.id))
        return [DueHold(hold.id, hold.origin) for hold in due[:limit]]

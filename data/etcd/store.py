"""The data server's store on an etcd cluster (DATA_STORE=etcd): the same contract as the embedded store.

The data server keeps no state of its own: balances, lock leases, fencing tokens, waiting lines and operation
records all live in etcd, and every change is one etcd transaction, so any number of data-server processes serve
one bank. Keys under ETCD_PREFIX:

  a/{account}        "cents seq owner": the balance, the account's last history entry's seq and its owner (none
                     for an account from before owners)
  c/{owner}/{account} empty: one of owner's accounts, written with the account's first owner
  h/{account}/{seq}  a history entry (data/history.py; seq in 12 digits), until the relay has moved it to the
                     statement store (history_keeping.py, relay.py); without one, for good or (a retention set)
                     under a lease a little longer than it. At most DATA_HISTORY_BACKLOG_LIMIT of them
  r/relay, r/progress, r/alarm  the relaying data server, its last batch, why it stopped (relay.py)
  l/{account}        the holder's business id, under an etcd lease; its create revision is the token
  g/{account}        the call (the caller's id for its lock request) the lock was granted to, under the same
                     lease: a later attempt of that request takes the lock over (claims.py)
  q/{account}/{id}   a request waiting for the account, under a lease; create revisions order the line
  w/{id}             the same waiting request, once, to count them
  o/k/{id}, o/r/{id} a keyed or a retry operation record, under a lease a little longer than its retention
                     (records.py)
  k/a/{origin}/{id}, k/i/{id}, k/x/{expiry}/{id}, k/c/{id}  holds: held, by origin, by id and by expiry; closed
                     (hold_keeping.py)
  quota              empty: written by every transaction of grouped requests, so that etcd weighs it (groups.py)

What each operation costs etcd (make bench counts it): a lock is one transaction, a commit another, and the lock
attempts and commits of concurrent requests on different accounts go to etcd together, as one (groups.py).
Locks share etcd leases (lock_leases.py); a renewal moves the lock to the newest lease (its create revision, the
token, stays). A commit numbers its history entries on from each account's seq as this process read it when it took
the lock (or reads it, if another process took it), and its transaction holds only if that balance is still the one
read (else it reads it and tries once more). Waiting for accounts: lines.py.
"""
import json
import math
import time

from data import history
from data import holds as holds_module
from data.etcd.account_values import account_state, amount_value, cents_and_owner, owners_after
from data.etcd.claims import Claim, give_back_late, held_by
from data.etcd.gateway import (
    EtcdGateway,
    LeaseGone,
    compare,
    count,
    decode,
    delete,
    get,
    get_after,
    get_newest,
    kvs,
    nested,
    put,
)
from data.etcd.groups import GroupedTxns
from data.etcd.history_keeping import HistoryKeeping
from data.etcd.hold_keeping import HoldKeeping
from data.etcd.keys import EtcdKeys
from data.etcd.known_balances import KnownBalance, KnownBalances
from data.etcd.lines import EtcdLines, TakingUnanswered
from data.etcd.local_lines import LocalLines
from data.etcd.lock_leases import SharedLockLeases
from data.etcd.records import CommittedBefore, EtcdRecords
from data.store import (
    AccountsPage,
    AccountView,
    BankView,
    CallerGone,
    CommitOutcome,
    Counts,
    Grant,
    HistoryMismatch,
    HistoryPage,
    HistoryUnavailable,
    HoldConflict,
    HoldsExceedBalance,
    HoldsFull,
    LeaseView,
    LockGrant,
    LocksGrant,
    NotLockHolder,
    RecordsFull,
    StoreUnavailable,
    UnknownAccount,
)


class _BalanceMoved(Exception):
    """A balance is no longer the one a commit was numbered from: another data server wrote under the lock."""


class EtcdStore:
    """Accounts, leases, lines and records in etcd, each operation one transaction (see the module's text)."""

    def __init__(self, settings, wall_clock=time.time):
        self._etcd = EtcdGateway(settings.etcd_endpoints, settings.etcd_timeout, settings.etcd_tls)
        self._keys = EtcdKeys(settings.etcd_prefix)
        self._ttl = settings.lock_ttl
        self._lock_leases = SharedLockLeases(self._etcd, self._ttl)
        self._wall_clock = wall_clock
        self._records = EtcdRecords(self._etcd, self._keys, settings, wall_clock)
        self._local = LocalLines()
        self._known = KnownBalances()
        self._groups = GroupedTxns(self._etcd, self._keys.quota())
        self._lines = EtcdLines(self._etcd, self._groups, self._keys, self._local, settings.lock_waiters, self._ttl)
        self._history = HistoryKeeping(self._etcd, self._keys, self._records, settings, wall_clock)
        self._holds = HoldKeeping(self._etcd, self._keys, self._records, settings, wall_clock)

    # ---- the contract (data/store.py) --------------------------------------------------------------------

    def lock(self, business, account, token=None, lookup=(), wait=0.0):
        if token is not None:
            return self._renew(business, account, token, lookup)
        granted = self.lock_all(business, [account], lookup, wait)
        grant = granted.grants[0]
        return LockGrant(grant.token, granted.ttl, grant.cents, granted.recorded, grant.owner, grant.holds)

    def lock_all(self, business, accounts, lookup=(), wait=0.0, call=None, answer_by=math.inf):
        if time.monotonic() >= answer_by:
            raise CallerGone(accounts)
        reads = [get(self._keys.amount(a)) for a in accounts] + self._holds.ranges(accounts) + \
            self._records.ranges(lookup)

        leases = []

        def take(give_up):
            leases.append(self._lock_leases.current(give_up))
            calls = [] if call is None else [put(self._keys.grant(a), call, leases[-1]) for a in accounts]
            return [put(self._keys.lock(a), business, leases[-1]) for a in accounts] + calls + reads

        claim = None if call is None else Claim(self._etcd, self._keys, business, accounts, call, reads)
        earlier, asked_at = self._known.tokens(accounts), time.monotonic()
        try:
            try:
                answer = self._lines.when_free(accounts, wait, take, answer_by, claim)
            except LeaseGone:
                # Its shared lease was revoked after it was handed out (another lock's answer was lost): nothing
                # was applied, and the next lease asked for is a new one. What is left of the wait is waited.
                answer = self._lines.when_free(accounts, max(0.0, asked_at + wait - time.monotonic()), take,
                                               answer_by, claim)
        except TakingUnanswered:
            # A lock transaction whose answer was lost may still be applied (in an election, say), and no one
            # would ever write or release under it: its lease is revoked, which takes any such lock with it (and
            # the other locks of the lease, whose holders' commits are then refused and tried again).
            self._lock_leases.revoke(leases[-1])
            raise
        until = time.monotonic() + self._lock_leases.life
        # The revision this attempt took the locks at: their token, unless it took them over from an earlier one.
        taken_at = int(answer["header"]["revision"])
        token = taken_at if claim is None or claim.token is None else claim.token
        # A token is the lock's create revision, and etcd's revisions only grow: above any token seen before asking.
        assert token != taken_at or all(token > seen for seen in earlier.values()), (
            f"token {token} is not above those seen: {earlier}")
        self._local.granted(accounts, token, until)
        if time.monotonic() > answer_by:
            try:
                give_back_late(self._etcd, self._keys, business, accounts, token, taken_at)
            finally:
                self._local.released(accounts)
                self._known.forget(accounts)
            raise CallerGone(accounts)
        # The reads follow the puts: of the locks (and of their call, when newly taken under one), or, taken over,
        # of the locks alone.
        puts = len(accounts) * (2 if call is not None and token == taken_at else 1)
        responses = answer["responses"][puts:puts + len(reads)]
        self._known.remember({account: KnownBalance(token, self._value(responses[i]), until,
                                                    self._holds.held(responses[len(accounts) + i]))
                              for i, account in enumerate(accounts)})
        grants = [Grant(account, token, *cents_and_owner(self._value(responses[i])),
                        self._holds.held(responses[len(accounts) + i])) for i, account in enumerate(accounts)]
        return LocksGrant(grants, self._ttl, self._records.recorded(responses[2 * len(accounts):], lookup))

    def unlock(self, business, account, token):
        answer = self._etcd.txn(self._holder(business, account, token), [delete(self._keys.lock(account))])
        self._local.released([account])
        self._known.forget([account])
        if not answer.get("succeeded"):
            raise NotLockHolder(business, account, token)

    def read(self, business, account, token=None, wait=0.0):
        reads = [get(self._keys.amount(account)), *self._holds.ranges([account])]
        if token is not None:
            answer = self._etcd.txn(self._holder(business, account, token), reads, resend=True)
            if not answer.get("succeeded"):
                raise NotLockHolder(business, account, token)
        else:
            # A read leaves nothing behind if its caller gives up: it may take as long as etcd allows.
            answer = self._lines.when_free([account], wait, lambda give_up: reads, math.inf)
        cents, owner = cents_and_owner(self._value(answer["responses"][0]))
        if cents is None:
            raise UnknownAccount(account)
        return AccountView(cents, owner, self._holds.held(answer["responses"][1]))

    def commit(self, business, writes, operations=(), unlock=False, release=None, entries=None, holds=()):
        release = release or {}
        held = {account: write.token for account, write in writes.items()} if unlock else {}
        for hold in holds:
            if hold["origin"] not in writes:
                raise HoldConflict(hold["id"], "its origin is not written under a lease in this commit")
        try:
            return self._commit(business, writes, operations, held, release, entries or {}, holds)
        except CommittedBefore as before:
            # A retry of a commit applied before is told its first results; what it would give back goes back.
            self._give_back(business, held, release)
            return CommitOutcome(True, before.results)

    def _commit(self, business, writes, operations, held, release, entries, holds):
        try:
            self._records.require_room(operations)
            # Every written account gets an entry: the commit's own, or an adjustment.
            self._history.require_room(max(len(writes), sum(len(listed) for listed in entries.values())))
            self._holds.require_room(holds)
        except (RecordsFull, HistoryUnavailable, HoldsFull):
            # A retry of what is recorded is answered from its record, full or not.
            self._records.raise_if_recorded(operations)
            raise
        # Numbered from the balances read under the lock; read again once, if another data server wrote since.
        for fresh in (False, True):
            try:
                prior, held_before = self._prior_balances(business, writes, operations, fresh)
                return self._commit_once(business, writes, operations, held, release, entries, holds, prior,
                                         held_before, fresh)
            except _BalanceMoved:
                continue
        # Twice a balance other than the one just read: someone else writes under this lock.
        account, write = next(iter(writes.items()))
        raise NotLockHolder(business, account, write.token)

    def _commit_once(self, business, writes, operations, held, release, entries, holds, prior, held_before, fresh):
        """The commit as one transaction, numbered from prior ({account: a/ value or None}, read just now if fresh,
        else when this process took the lock; held_before: {account: its held holds}, read with them): its outcome;
        _BalanceMoved if a balance is no longer that one."""
        amounts = {account: write.cents for account, write in writes.items()}
        # No balance is ever below zero: a commit that would leave one is a bug upstream, and applies nothing.
        assert all(cents >= 0 for cents in amounts.values()), f"a commit would leave a negative balance: {amounts}"
        try:
            holds_module.require_cover(amounts, held_before, holds)
        except HoldsExceedBalance:
            self._records.raise_if_recorded(operations)
            raise
        states = {account: account_state(value) for account, value in prior.items()}
        try:
            recorded = history.numbered(amounts, entries, states, operations[0]["id"] if operations else None,
                                        int(self._wall_clock() * 1000))
        except HistoryMismatch:
            # A commit applied before no longer follows from the balance it wrote: a retry, told its first results.
            self._records.raise_if_recorded(operations)
            if not fresh:
                raise _BalanceMoved() from None     # another data server may have written under the lock since
            raise
        seqs = {account: state.last_seq for account, state in states.items()}
        seqs |= history.last_seqs(recorded, seqs)
        owners = owners_after(writes, prior)
        checks = [c for account, write in writes.items() for c in self._holder(business, account, write.token)]
        checks += [compare(self._records.key(op), "VERSION", "EQUAL", 0) for op in operations]
        checks += [compare(self._keys.amount(a), "VALUE", "EQUAL", value) if value is not None
                   else compare(self._keys.amount(a), "VERSION", "EQUAL", 0) for a, value in prior.items()]
        success = [put(self._keys.amount(account), amount_value(cents, seqs[account], owners[account]))
                   for account, cents in amounts.items()]
        success += [put(self._keys.owned_account(write.owner, account), "") for account, write in writes.items()
                    if write.owner is not None and cents_and_owner(prior[account])[1] is None]
        success += [self._records.put(op) for op in operations]
        success += [self._history.put(entry) for entry in recorded]
        success += [delete(self._keys.lock(account)) for account in held]
        success += [self._release_op(business, account, token) for account, token in release.items()]
        hold_checks, hold_success = self._holds.txn_parts(holds)
        checks += hold_checks
        success += hold_success
        # Refused, the transaction says what is recorded of its operations: a retry is told its first results.
        try:
            answer = self._groups.txn([*writes, *release, *(f"operation {op['id']}" for op in operations)], checks,
                                      success, self._records.ranges([op["id"] for op in operations]),
                                      self._etcd.timeout)
        except StoreUnavailable:
            self._known.forget(writes)
            raise
        finally:
            if held or release:
                # Released, or not known to be held any more: this process's waiters for them may try.
                self._local.released([*held, *release])
                self._known.forget([*held, *release])
        if answer.get("succeeded"):
            if not held:
                forget_at = time.monotonic() + self._lock_leases.life
                self._known.remember({
                    account: KnownBalance(write.token, amount_value(write.cents, seqs[account], owners[account]),
                                          forget_at, holds_module.still_held(held_before.get(account, ()), holds,
                                                                             account))
                    for account, write in writes.items()})
            return CommitOutcome(False, [op["result"] for op in operations], recorded)
        self._records.raise_if_found(answer.get("responses", []), operations)
        self._known.forget(writes)
        for account, write in writes.items():
            if not self._is_holder(business, account, write.token):
                raise NotLockHolder(business, account, write.token)
        self._holds.raise_conflict(holds)
        raise _BalanceMoved()

    def accounts(self, owner, after=None, limit=history.DEFAULT_PAGE_ENTRIES):
        below = None if after is None else self._keys.owned_account(owner, after)
        listed = self._etcd.txn(success=[get_after(self._keys.owned(owner), below, limit)], resend=True)
        names = [self._keys.account_of_owned(owner, decode(kv["key"])) for kv in kvs(listed["responses"][0])]
        if not names:
            return AccountsPage([], None)
        # An account is never deleted, and its owner key is written with its first balance: every one is there.
        answer = self._etcd.txn(success=[get(self._keys.amount(account)) for account in names], resend=True)
        balances = [account_state(self._value(response)).cents for response in answer["responses"]]
        return AccountsPage(list(zip(names, balances)), names[-1] if len(names) == limit else None)

    def history(self, account, before=None, limit=history.DEFAULT_PAGE_ENTRIES, owner=None):
        below = self._keys.entry(account, before) if before else None
        answer = self._etcd.txn(success=[get(self._keys.amount(account)),
                                         get_newest(self._keys.entries(account), below, limit)], resend=True)
        value = self._value(answer["responses"][0])
        if value is None or owner not in (None, cents_and_owner(value)[1]):
            raise UnknownAccount(account)
        entries = [{"account": account, "seq": self._keys.seq_of_entry(decode(kv["key"])),
                    **json.loads(decode(kv["value"]))} for kv in kvs(answer["responses"][1])]
        entries = self._history.older(account, entries, before, limit)
        oldest = entries[-1]["seq"] if entries else 1
        return HistoryPage(entries, oldest if len(entries) == limit and oldest > 1 else None,
                           cents_and_owner(value)[1])

    def hold(self, hold_id):
        return self._holds.get(hold_id)

    def due_holds(self, now_ms, limit):
        return self._holds.due(now_ms, limit)

    def counts(self):
        kinds = (self._keys.amounts(), self._keys.locks(), self._keys.waiters(), self._keys.records(keyed=True),
                 self._keys.records(keyed=False))
        answer = self._etcd.txn(success=[get(kind, prefix=True, count_only=True) for kind in kinds], resend=True)
        accounts, leases, line, keyed, retries = (count(response) for response in answer["responses"])
        return Counts(accounts, leases, line + self._lines.waiting_here(), keyed, retries)

    def view(self, most_leases):
        answer = self._etcd.txn(success=[get(self._keys.amounts(), prefix=True), get(self._keys.locks(), prefix=True),
                                         get(self._keys.waiters(), prefix=True, count_only=True)], resend=True)
        amounts, locks, line = answer["responses"]
        # A lock set shares one etcd lease: one look at each lease tells every lock of it how long it has left.
        time_left = {lease: self._etcd.time_left(lease) for lease in {kv.get("lease") for kv in kvs(locks)} if lease}
        # etcd deletes a lock's key when its lease expires: every key listed is a live lease.
        leases = sorted((LeaseView(self._keys.account_of_lock(decode(kv["key"])), decode(kv["value"]),
                                   int(kv["create_revision"]), time_left.get(kv.get("lease"), 0))
                         for kv in kvs(locks)), key=lambda lease: (lease.seconds_left, lease.account))
        return BankView(sum(account_state(decode(kv["value"])).cents for kv in kvs(amounts)), count(amounts),
                        count(line) + self._lines.waiting_here(),
                        count(locks), leases[:most_leases])

    def stats(self):
        return self._history.stats()

    def close(self):
        """Nothing to flush: every change was one transaction the cluster acknowledged. The grouping thread and
        the relay end (handing over to another data server's)."""
        self._history.close()
        self._groups.close()

    # ---- leases and holders ------------------------------------------------------------------------------

    def _renew(self, business, account, token, lookup):
        # The lock moves to the newest lease: renewing the one it shares would keep its neighbours alive too.
        lease = self._lock_leases.current(time.monotonic() + self._etcd.timeout)
        answer = self._etcd.txn(self._holder(business, account, token),
                                [put(self._keys.lock(account), business, lease), get(self._keys.amount(account)),
                                 *self._holds.ranges([account])] + self._records.ranges(lookup), resend=True)
        if not answer.get("succeeded"):
            raise NotLockHolder(business, account, token)
        until = time.monotonic() + self._lock_leases.life
        self._local.granted([account], token, until)
        self._known.remember({account: KnownBalance(token, self._value(answer["responses"][1]), until,
                                                    self._holds.held(answer["responses"][2]))})
        cents, owner = cents_and_owner(self._value(answer["responses"][1]))
        return LockGrant(token, self._ttl, cents, self._records.recorded(answer["responses"][3:], lookup), owner,
                         self._holds.held(answer["responses"][2]))

    def _holder(self, business, account, token):
        return held_by(self._keys, business, account, token)

    def _is_holder(self, business, account, token):
        return bool(self._etcd.txn(self._holder(business, account, token), resend=True).get("succeeded"))

    def _release_op(self, business, account, token):
        return nested(self._holder(business, account, token), [delete(self._keys.lock(account))])

    def _give_back(self, business, *held):
        ops = [self._release_op(business, account, token) for group in held for account, token in group.items()]
        if ops:
            try:
                self._etcd.txn(success=ops, resend=True)
            finally:
                self._local.released([account for group in held for account in group])
                self._known.forget([account for group in held for account in group])

    # ---- balances and history ----------------------------------------------------------------------------

    def _prior_balances(self, business, writes, operations, fresh):
        """({account: a/ value or None}, {account: its held holds}) of the written accounts as they are under the
        caller's locks: as this process read them when it took a lock (unless fresh), else read now.
        CommittedBefore if the locks are gone because this very commit was applied before."""
        prior, held_before, unread = {}, {}, []
        for account, write in writes.items():
            known = None if fresh else self._known.get(account)
            if known is not None and known.token == write.token:
                prior[account], held_before[account] = known.value, known.holds
            else:
                unread.append(account)
        if not unread:
            return prior, held_before
        tokens = {account: write.token for account, write in writes.items()}
        op_ids = [op["id"] for op in operations]
        answer = self._etcd.txn([c for a in unread for c in self._holder(business, a, tokens[a])],
                                [get(self._keys.amount(a)) for a in unread] + self._holds.ranges(unread),
                                self._records.ranges(op_ids), resend=True)
        if not answer.get("succeeded"):
            self._records.raise_if_found(answer.get("responses", []), operations)
            # The lock that was lost, or (gone and back between the two looks) the first asked about.
            account = next((a for a in unread if not self._is_holder(business, a, tokens[a])), unread[0])
            raise NotLockHolder(business, account, tokens[account])
        for index, account in enumerate(unread):
            prior[account] = self._value(answer["responses"][index])
            held_before[account] = self._holds.held(answer["responses"][len(unread) + index])
        return prior, held_before

    @staticmethod
    def _value(response):
        """An a/ key's value as read, or None if there is no such key."""
        return decode(kvs(response)[0]["value"]) if kvs(response) else None



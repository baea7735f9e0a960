"""The data server's store on an etcd cluster (DATA_STORE=etcd): the same contract as the embedded store.

The data server keeps no state of its own: balances, lock leases, fencing tokens, waiting lines and operation
records all live in etcd, and every change is one etcd transaction, so any number of data-server processes serve
one bank. Keys under ETCD_PREFIX:

  a/{account}        "cents seq": the balance and the account's last history entry's seq
  h/{account}/{seq}  a history entry (data/history.py; seq in 12 digits), under a lease a little longer than
                     the history's retention
  l/{account}        the holder's business id, under an etcd lease; its create revision is the token
  q/{account}/{id}   a request waiting for the account, under a lease; create revisions order the line
  w/{id}             the same waiting request, once, to count them
  o/k/{id}, o/r/{id} a keyed or a retry operation record, under a lease a little longer than its retention
                     (records.py)
  quota              empty: written by every transaction of grouped requests, so that etcd weighs it (groups.py)

What each operation costs etcd (make bench counts it): a lock is one transaction, a commit another, and the lock
attempts and commits of concurrent requests on different accounts go to etcd together, as one (groups.py).
Locks share etcd leases: a data server grants one every LOCK_LEASE_SHARE seconds for every lock it takes in that
time, so a lock lives from LOCK_TTL to LOCK_TTL + LOCK_LEASE_SHARE; a renewal moves the lock to the newest lease
(its create revision, the token, stays). A commit numbers its history entries on from each account's seq as this
process read it when it took the lock (or reads it, if another process took it), and its transaction holds only if
that balance is still the one read (else it reads it and tries once more). Waiting for accounts: lines.py.
"""
import json
import math
import threading
import time

from data import history
from data.etcd.gateway import EtcdGateway, compare, count, decode, delete, get, get_newest, kvs, nested, put
from data.etcd.groups import GroupedTxns
from data.etcd.keys import EtcdKeys
from data.etcd.lines import EtcdLines, TakingUnanswered, time_left
from data.etcd.records import EtcdRecords
from data.etcd.local_lines import LocalLines
from data.store import (BankView, CommitOutcome, Counts, Grant, HistoryMismatch, HistoryPage, LeaseView,
                        LockGrant, LocksGrant, NotLockHolder, RecordsFull, Stats, StoreUnavailable, UnknownAccount)

REVOKE_PAUSE = 0.2                      # seconds between tries at revoking the lease of a lock lost in transit
LOCK_LEASE_SHARE = 1                    # seconds (etcd's leases are whole seconds) one lease is given to new locks
KNOWN_BALANCES = 10_000                 # balances read at lock time kept before those of expired locks are swept


class EtcdStore:
    """Accounts, leases, lines and records in etcd, each operation one transaction (see the module's text)."""

    def __init__(self, settings, wall_clock=time.time):
        self._etcd = EtcdGateway(settings.etcd_endpoints, settings.etcd_timeout, settings.etcd_tls)
        self._keys = EtcdKeys(settings.etcd_prefix)
        self._ttl = settings.lock_ttl
        self._lease_life = self._ttl + LOCK_LEASE_SHARE    # seconds a lock lease lives at most
        self._wall_clock = wall_clock
        self._records = EtcdRecords(self._etcd, self._keys.prefix, settings, wall_clock)
        self._lock_lease = (None, -math.inf)    # the lease new locks share, time.monotonic() before its grant
        self._lock_lease_mutex = threading.Lock()
        self._mutex = threading.Lock()
        self._local = LocalLines()
        self._known = {}                    # account -> (token, its a/ value as read under that lock, time to forget)
        self._groups = GroupedTxns(self._etcd, self._keys.quota())
        self._lines = EtcdLines(self._etcd, self._groups, self._keys, self._local, settings.lock_waiters, self._ttl)

    # ---- the contract (data/store.py) --------------------------------------------------------------------

    def lock(self, business, account, token=None, lookup=(), wait=0.0):
        if token is not None:
            return self._renew(business, account, token, lookup)
        granted = self.lock_all(business, [account], lookup, wait)
        return LockGrant(granted.grants[0].token, granted.ttl, granted.grants[0].cents, granted.recorded)

    def lock_all(self, business, accounts, lookup=(), wait=0.0):
        reads = [get(self._keys.amount(a)) for a in accounts] + self._records.ranges(lookup)

        leases = []

        def take(give_up):
            leases.append(self._shared_lock_lease(give_up))
            return [put(self._keys.lock(a), business, leases[-1]) for a in accounts] + reads

        try:
            answer = self._lines.when_free(accounts, wait, take)
        except TakingUnanswered:
            # A lock transaction whose answer was lost may still be applied (in an election, say), and no one
            # would ever write or release under it: its lease is revoked, which takes any such lock with it (and
            # the other locks of the lease, whose holders' commits are then refused and tried again).
            self._retire_lock_lease(leases[-1])
            self._revoke_in_background(leases[-1])
            raise
        until = time.monotonic() + self._lease_life
        self._local.granted(accounts, until)
        token = int(answer["header"]["revision"])
        responses = answer["responses"][len(accounts):]
        self._remember({account: (token, self._value(responses[i])) for i, account in enumerate(accounts)}, until)
        grants = [Grant(account, token, self._cents(responses[i])) for i, account in enumerate(accounts)]
        return LocksGrant(grants, self._ttl, self._records.recorded(responses[len(accounts):], lookup))

    def unlock(self, business, account, token):
        answer = self._etcd.txn(self._holder(business, account, token), [delete(self._keys.lock(account))])
        self._local.released([account])
        self._forget([account])
        if not answer.get("succeeded"):
            raise NotLockHolder(business, account, token)

    def read(self, business, account, token=None, wait=0.0):
        if token is not None:
            answer = self._etcd.txn(self._holder(business, account, token), [get(self._keys.amount(account))],
                                    resend=True)
            if not answer.get("succeeded"):
                raise NotLockHolder(business, account, token)
        else:
            # A read leaves nothing behind if its caller gives up: it may take as long as etcd allows.
            answer = self._lines.when_free([account], wait, lambda give_up: [get(self._keys.amount(account))], math.inf)
        cents = self._cents(answer["responses"][0])
        if cents is None:
            raise UnknownAccount(account)
        return cents

    def commit(self, business, writes, operations=(), unlock=False, release=None, entries=None):
        release = release or {}
        held = {a: token for a, (_, token) in writes.items()} if unlock else {}
        try:
            self._records.require_room(operations)
        except RecordsFull:
            # A retry of what is recorded is answered from its record, full or not.
            first_results = self._records.recorded_results(operations)
            if first_results is None:
                raise
            self._give_back(business, held, release)
            return CommitOutcome(True, first_results)
        # Numbered from the balances read under the lock; read again once, if another data server wrote since.
        for fresh in (False, True):
            prior = self._prior_balances(business, writes, operations, fresh)
            if not isinstance(prior, dict):
                self._give_back(business, held, release)
                return CommitOutcome(True, prior)
            outcome = self._commit_once(business, writes, operations, held, release, entries or {}, prior, fresh)
            if outcome is not None:
                return outcome
        # Twice a balance other than the one just read: someone else writes under this lock.
        account, (_, token) = next(iter(writes.items()))
        raise NotLockHolder(business, account, token)

    def _commit_once(self, business, writes, operations, held, release, entries, prior, fresh):
        """The commit as one transaction: its outcome, or None if a balance is no longer the one in prior (read
        just now if fresh, else when this process took the lock)."""
        at = int(self._wall_clock() * 1000)
        try:
            recorded = history.numbered({a: cents for a, (cents, _) in writes.items()}, entries,
                                        {a: (cents, seq) for a, (cents, seq, _) in prior.items()},
                                        operations[0]["id"] if operations else None, at)
        except HistoryMismatch:
            # A commit applied before no longer follows from the balance it wrote: a retry, told its first results.
            first_results = self._records.recorded_results(operations)
            if first_results is None:
                if not fresh:
                    return None         # another data server may have written under the lock since it was taken
                raise
            self._give_back(business, held, release)
            return CommitOutcome(True, first_results)
        seqs = {a: seq for a, (_, seq, _) in prior.items()} | history.last_seqs(recorded)
        checks = [c for account, (_, token) in writes.items() for c in self._holder(business, account, token)]
        checks += [compare(self._records.key(op), "VERSION", "EQUAL", 0) for op in operations]
        checks += [compare(self._keys.amount(a), "VALUE", "EQUAL", value) if value is not None
                   else compare(self._keys.amount(a), "VERSION", "EQUAL", 0) for a, (_, _, value) in prior.items()]
        success = [put(self._keys.amount(account), f"{cents} {seqs[account]}")
                   for account, (cents, _) in writes.items()]
        success += [self._records.put(op) for op in operations]
        success += [self._put_entry(entry) for entry in recorded]
        success += [delete(self._keys.lock(account)) for account in held]
        success += [self._release_op(business, account, token) for account, token in release.items()]
        # Refused, the transaction says what is recorded of its operations: a retry is told its first results.
        try:
            answer = self._groups.txn([*writes, *release, *(f"operation {op['id']}" for op in operations)], checks,
                                      success, self._records.ranges([op["id"] for op in operations]),
                                      self._etcd.timeout)
        except StoreUnavailable:
            self._forget(writes)
            raise
        finally:
            if held or release:
                # Released, or not known to be held any more: this process's waiters for them may try.
                self._local.released([*held, *release])
                self._forget([*held, *release])
        if answer.get("succeeded"):
            if not held:
                self._remember({a: (token, f"{cents} {seqs[a]}") for a, (cents, token) in writes.items()},
                               time.monotonic() + self._lease_life)
            return CommitOutcome(False, [op["result"] for op in operations], recorded)
        first_results = self._records.first_results(answer.get("responses", []), operations)
        if first_results is not None:
            self._give_back(business, held, release)
            return CommitOutcome(True, first_results)
        self._forget(writes)
        lost = [(account, token) for account, (_, token) in writes.items() if not self._holds(business, account, token)]
        if lost:
            raise NotLockHolder(business, *lost[0])
        return None

    def history(self, account, before=None, limit=history.DEFAULT_PAGE):
        answer = self._etcd.txn(success=[get(self._keys.amount(account)),
                                         get_newest(self._keys.entries(account), before and f"{before:012d}", limit)],
                                resend=True)
        if not kvs(answer["responses"][0]):
            raise UnknownAccount(account)
        entries = [{"account": account, "seq": int(decode(kv["key"]).rpartition("/")[2]),
                    **json.loads(decode(kv["value"]))} for kv in kvs(answer["responses"][1])]
        oldest = entries[-1]["seq"] if entries else 1
        return HistoryPage(entries, oldest if len(entries) == limit and oldest > 1 else None)

    def counts(self):
        answer = self._etcd.txn(success=[get(self._keys.prefix + key, prefix=True, count_only=True)
                                         for key in ("a/", "l/", "w/", "o/k/", "o/r/")], resend=True)
        accounts, leases, line, keyed, retries = (count(response) for response in answer["responses"])
        return Counts(accounts, leases, line + self._lines.waiting_here(), keyed, retries)

    def view(self, most_leases):
        # Each kind's keys: the layout's own key for the empty name is their prefix.
        answer = self._etcd.txn(success=[get(self._keys.amount(""), prefix=True), get(self._keys.lock(""), prefix=True),
                                         get(self._keys.waiter(""), prefix=True, count_only=True)], resend=True)
        amounts, locks, line = answer["responses"]
        # A lock set shares one etcd lease: one look at each lease tells every lock of it how long it has left.
        time_left = {lease: self._etcd.time_left(lease) for lease in {kv.get("lease") for kv in kvs(locks)} if lease}
        # etcd deletes a lock's key when its lease expires: every key listed is a live lease.
        leases = sorted((LeaseView(decode(kv["key"])[len(self._keys.lock("")):], decode(kv["value"]),
                                   int(kv["create_revision"]), time_left.get(kv.get("lease"), 0))
                         for kv in kvs(locks)), key=lambda lease: (lease.seconds_left, lease.account))
        return BankView(sum(_balance(decode(kv["value"]))[0] for kv in kvs(amounts)), count(amounts),
                        count(line) + self._lines.waiting_here(),
                        count(locks), leases[:most_leases])

    def stats(self):
        return Stats()

    def close(self):
        """Nothing to flush: every change was one transaction the cluster acknowledged. The grouping thread ends."""
        self._groups.close()

    # ---- leases and holders ------------------------------------------------------------------------------

    def _renew(self, business, account, token, lookup):
        # The lock moves to the newest lease: renewing the one it shares would keep its neighbours alive too.
        lease = self._shared_lock_lease(time.monotonic() + self._etcd.timeout)
        answer = self._etcd.txn(self._holder(business, account, token),
                                [put(self._keys.lock(account), business, lease), get(self._keys.amount(account))]
                                + self._records.ranges(lookup), resend=True)
        if not answer.get("succeeded"):
            raise NotLockHolder(business, account, token)
        until = time.monotonic() + self._lease_life
        self._local.granted([account], until)
        self._remember({account: (token, self._value(answer["responses"][1]))}, until)
        return LockGrant(token, self._ttl, self._cents(answer["responses"][1]),
                         self._records.recorded(answer["responses"][2:], lookup))

    def _shared_lock_lease(self, give_up):
        """The lease new locks take: granted anew every LOCK_LEASE_SHARE seconds, for LOCK_TTL and that long."""
        if not self._lock_lease_mutex.acquire(timeout=time_left(give_up)):
            raise StoreUnavailable("etcd was too slow to grant a lease within the caller's wait; nothing was taken")
        try:
            lease, asked_at = self._lock_lease
            if time.monotonic() - asked_at >= LOCK_LEASE_SHARE:
                asked_at = time.monotonic()
                lease = self._etcd.grant(self._lease_life, timeout=time_left(give_up))
                self._lock_lease = (lease, asked_at)
            return lease
        finally:
            self._lock_lease_mutex.release()

    def _retire_lock_lease(self, lease):
        """No new lock takes lease (it is being revoked)."""
        with self._lock_lease_mutex:
            if self._lock_lease[0] == lease:
                self._lock_lease = (None, -math.inf)

    def _revoke_in_background(self, lease):
        """Revoke lease, trying again while etcd does not answer, for at most LOCK_TTL (after which the lease has
        at most LOCK_LEASE_SHARE left to live)."""
        def revoke():
            deadline = time.monotonic() + self._ttl
            while time.monotonic() < deadline:
                try:
                    self._etcd.revoke(lease)
                    return
                except StoreUnavailable:
                    time.sleep(REVOKE_PAUSE)

        threading.Thread(target=revoke, name="lease-revoke", daemon=True).start()

    def _holder(self, business, account, token):
        return [compare(self._keys.lock(account), "CREATE", "EQUAL", token),
                compare(self._keys.lock(account), "VALUE", "EQUAL", business)]

    def _holds(self, business, account, token):
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
                self._forget([account for group in held for account in group])

    # ---- balances and history ----------------------------------------------------------------------------

    def _prior_balances(self, business, writes, operations, fresh):
        """{account: (cents or None, last seq, a/ value or None)} of the written accounts as they are under the
        caller's locks: as this process read them when it took a lock (unless fresh), else read now. If the locks
        are gone because this very commit was applied before, its first results instead (a list)."""
        prior, unread = {}, []
        for account, (_, token) in writes.items():
            known = None if fresh else self._known.get(account)
            if known is not None and known[0] == token:
                prior[account] = (*_balance(known[1]), known[1])
            else:
                unread.append(account)
        if not unread:
            return prior
        op_ids = [op["id"] for op in operations]
        answer = self._etcd.txn([c for a in unread for c in self._holder(business, a, writes[a][1])],
                                [get(self._keys.amount(a)) for a in unread], self._records.ranges(op_ids), resend=True)
        if not answer.get("succeeded"):
            first_results = self._records.first_results(answer.get("responses", []), operations)
            if first_results is not None:
                return first_results
            # The lock that was lost, or (gone and back between the two looks) the first asked about.
            account = next((a for a in unread if not self._holds(business, a, writes[a][1])), unread[0])
            raise NotLockHolder(business, account, writes[account][1])
        for account, response in zip(unread, answer["responses"]):
            value = self._value(response)
            prior[account] = (*_balance(value), value)
        return prior

    def _remember(self, balances, until):
        """Keep {account: (token, a/ value)} as read under those locks, until the locks' leases end at the latest."""
        with self._mutex:
            if len(self._known) >= KNOWN_BALANCES:
                now = time.monotonic()
                self._known = {a: known for a, known in self._known.items() if known[2] > now}
            self._known.update({a: (token, value, until) for a, (token, value) in balances.items()})

    def _forget(self, accounts):
        with self._mutex:
            for account in accounts:
                self._known.pop(account, None)

    def _put_entry(self, entry):
        value = {key: entry[key] for key in ("kind", "cents", "balance", "counterparty", "operation", "key", "at")}
        return put(f"{self._keys.entries(entry['account'])}{entry['seq']:012d}",
                   json.dumps(value, separators=(",", ":")), self._records.span_lease("history", entry["at"] // 1000))

    @staticmethod
    def _value(response):
        """An a/ key's value as read, or None if there is no such key."""
        return decode(kvs(response)[0]["value"]) if kvs(response) else None

    def _cents(self, response):
        return _balance(self._value(response))[0]


def _balance(value):
    """(cents or None, last history seq) of an a/ value ("cents seq"; "cents" as written before history)."""
    if value is None:
        return None, 0
    cents, _, seq = value.partition(" ")
    return int(cents), int(seq or 0)

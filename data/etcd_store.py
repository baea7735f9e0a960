"""The data server's store on an etcd cluster (DATA_STORE=etcd): the same contract as the embedded store.

The data server keeps no state of its own: balances, lock leases, fencing tokens, waiting lines and operation
records all live in etcd, and every change is one etcd transaction, so any number of data-server processes serve
one bank. Keys under ETCD_PREFIX:

  a/{account}        cents
  l/{account}        the holder's business id, under an etcd lease of LOCK_TTL; its create revision is the token
  q/{account}/{id}   a request waiting for the account, under a lease; create revisions order the line
  w/{id}             the same waiting request, once, to count them
  o/k/{id}, o/r/{id} a keyed or a retry operation record, under a lease a little longer than its retention
"""
import json
import math
import threading
import time
import uuid

from data.etcd_gateway import (EtcdGateway, compare, count, decode, delete, get, kvs, nested, no_key_under,
                               put)
from data.metrics import LOCK_WAIT_SECONDS
from data.store import (BankView, CommitOutcome, Counts, Grant, LeaseView, LockGrant, LockHeld, LocksGrant,
                        NotLockHolder, OperationConflict, RecordsFull, Stats, StoreUnavailable, UnknownAccount)

POLL_FIRST, POLL_MOST = 0.002, 0.02     # seconds between looks at a line while waiting
RECORD_LEASE_SPAN = 60                  # seconds of records that share one etcd lease
# A place in line outlives its waiter's wait by this much and no more: a waiter cut off from etcd cannot take its
# place out itself, and until the place expires it holds back everyone behind it.
LINE_LEASE_MARGIN = 1.0
# A lock is taken only while its caller still waits for the answer: within its wait and this much more, which
# must be less than the business servers' DATA_TIMEOUT. A lock granted to a caller that gave up holds its accounts
# for LOCK_TTL with no one to write or release them.
GRANT_GRACE = 0.5
SHORTEST_CALL = 0.05                    # seconds: with less left than this, a lock is not even tried
REVOKE_PAUSE = 0.2                      # seconds between tries at revoking the lease of a lock lost in transit


class EtcdStore:
    """Accounts, leases, lines and records in etcd, each operation one transaction (see the module's text)."""

    def __init__(self, settings, wall_clock=time.time):
        self._etcd = EtcdGateway(settings.etcd_endpoints, settings.etcd_timeout, settings.etcd_tls)
        self._p = settings.etcd_prefix
        self._ttl = settings.lock_ttl
        self._retention = {True: settings.operation_retention, False: settings.retry_record_retention}
        self._limit = {True: settings.operation_limit, False: settings.retry_record_limit}
        self._wall_clock = wall_clock
        self._record_leases = {}            # (keyed, span) -> etcd lease id
        self._mutex = threading.Lock()
        self._max_waiters = settings.lock_waiters   # waiting requests hold this process's threads: keep some free
        self._waiters = 0

    # ---- the contract (data/store.py) --------------------------------------------------------------------

    def lock(self, business, account, token=None, lookup=(), wait=0.0):
        if token is not None:
            return self._renew(business, account, token, lookup)
        granted = self.lock_all(business, [account], lookup, wait)
        return LockGrant(granted.grants[0].token, granted.ttl, granted.grants[0].cents, granted.recorded)

    def lock_all(self, business, accounts, lookup=(), wait=0.0):
        reads = [get(self._amount(a)) for a in accounts] + self._record_ranges(lookup)

        leases = []

        def take(give_up):
            # A lease of its own, granted just before the locks are taken, so that it lives LOCK_TTL from then.
            leases.append(self._etcd.grant(self._ttl, timeout=_time_left(give_up)))
            return [put(self._lock(a), business, leases[-1]) for a in accounts] + reads

        try:
            answer = self._when_free(accounts, wait, take)
        except StoreUnavailable:
            # A lock transaction whose answer was lost may still be applied (in an election, say), and no one
            # would ever write or release under it: its lease is revoked, which takes any such lock with it.
            for lease in leases:
                self._revoke_in_background(lease)
            raise
        token = int(answer["header"]["revision"])
        responses = answer["responses"][len(accounts):]
        grants = [Grant(account, token, self._cents(responses[i])) for i, account in enumerate(accounts)]
        return LocksGrant(grants, self._ttl, self._recorded(responses[len(accounts):], lookup))

    def unlock(self, business, account, token):
        answer = self._etcd.txn(self._holder(business, account, token), [delete(self._lock(account))])
        if not answer.get("succeeded"):
            raise NotLockHolder(business, account, token)

    def read(self, business, account, token=None, wait=0.0):
        if token is not None:
            answer = self._etcd.txn(self._holder(business, account, token), [get(self._amount(account))],
                                    resend=True)
            if not answer.get("succeeded"):
                raise NotLockHolder(business, account, token)
        else:
            # A read leaves nothing behind if its caller gives up: it may take as long as etcd allows.
            answer = self._when_free([account], wait, lambda give_up: [get(self._amount(account))], math.inf)
        cents = self._cents(answer["responses"][0])
        if cents is None:
            raise UnknownAccount(account)
        return cents

    def commit(self, business, writes, operations=(), unlock=False, release=None):
        release = release or {}
        first_results = self._recorded_results(operations)
        if first_results is not None:
            self._give_back(business, {a: token for a, (_, token) in writes.items()} if unlock else {}, release)
            return CommitOutcome(True, first_results)
        self._require_room(operations)
        checks = [c for account, (_, token) in writes.items() for c in self._holder(business, account, token)]
        checks += [compare(self._record(op), "VERSION", "EQUAL", 0) for op in operations]
        success = [put(self._amount(account), str(cents)) for account, (cents, _) in writes.items()]
        success += [self._put_record(op) for op in operations]
        if unlock:
            success += [delete(self._lock(account)) for account in writes]
        success += [self._release_op(business, account, token) for account, token in release.items()]
        answer = self._etcd.txn(checks, success)
        if answer.get("succeeded"):
            return CommitOutcome(False, [op["result"] for op in operations])
        first_results = self._recorded_results(operations)
        if first_results is not None:
            return CommitOutcome(True, first_results)
        lost = [(account, token) for account, (_, token) in writes.items() if not self._holds(business, account, token)]
        raise NotLockHolder(business, *(lost or [(None, None)])[0])

    def counts(self):
        answer = self._etcd.txn(success=[get(self._p + key, prefix=True, count_only=True)
                                         for key in ("a/", "l/", "w/", "o/k/", "o/r/")], resend=True)
        return Counts(*(count(response) for response in answer["responses"]))

    def view(self, most_leases):
        answer = self._etcd.txn(success=[get(self._p + "a/", prefix=True), get(self._p + "l/", prefix=True),
                                         get(self._p + "w/", prefix=True, count_only=True)], resend=True)
        amounts, locks, line = answer["responses"]
        # A lock set shares one etcd lease: one look at each lease tells every lock of it how long it has left.
        time_left = {lease: self._etcd.time_left(lease) for lease in {kv.get("lease") for kv in kvs(locks)} if lease}
        # etcd deletes a lock's key when its lease expires: every key listed is a live lease.
        leases = sorted((LeaseView(decode(kv["key"])[len(self._p) + 2:], decode(kv["value"]),
                                   int(kv["create_revision"]), time_left.get(kv.get("lease"), 0))
                         for kv in kvs(locks)), key=lambda lease: (lease.seconds_left, lease.account))
        return BankView(sum(int(decode(kv["value"])) for kv in kvs(amounts)), count(amounts), count(line),
                        count(locks), leases[:most_leases])

    def stats(self):
        return Stats()

    def close(self):
        """Nothing to flush: every change was one transaction the cluster acknowledged."""

    # ---- waiting in line ---------------------------------------------------------------------------------

    def _when_free(self, accounts, wait, then, grace=GRANT_GRACE):
        """Run then(give_up)'s operations in one transaction once no account is locked and no one waits for one
        ahead of this request, waiting up to `wait` seconds in line; raise LockHeld otherwise. give_up: the
        time (monotonic) after which the caller no longer waits for the answer, so nothing may be taken."""
        deadline = time.monotonic() + wait
        give_up = deadline + grace
        unlocked = [compare(self._lock(a), "VERSION", "EQUAL", 0) for a in accounts]
        answer = self._etcd.txn(unlocked + [no_key_under(self._line(a)) for a in accounts], then(give_up),
                                [get(self._lock(a)) for a in accounts], timeout=_time_left(give_up))
        if answer.get("succeeded"):
            return answer
        if wait <= 0:
            raise self._held(accounts, answer["responses"])
        return self._wait_turn(accounts, deadline, give_up, unlocked, then)

    def _wait_turn(self, accounts, deadline, give_up, unlocked, then):
        """Join every account's line in one transaction (one revision: one order for all lines), wait until
        first in each and the locks are free, then run then()'s operations in the transaction that leaves."""
        with self._mutex:
            if self._waiters >= self._max_waiters:
                raise LockHeld(accounts[0], "earlier waiting requests", 0.01)
            self._waiters += 1
        started = time.monotonic()
        try:
            return self._wait_in_line(accounts, deadline, give_up, unlocked, then)
        finally:
            LOCK_WAIT_SECONDS.observe(time.monotonic() - started)
            with self._mutex:
                self._waiters -= 1

    def _wait_in_line(self, accounts, deadline, give_up, unlocked, then):
        me = uuid.uuid4().hex
        # A place in every account's line, and one key for the request itself, so that waiters count once.
        places = [self._place(account, me) for account in accounts]
        lease = self._etcd.grant(deadline - time.monotonic() + LINE_LEASE_MARGIN)
        self._etcd.txn(success=[put(key, "", lease) for key in places + [self._waiter(me)]], resend=True)
        pause = POLL_FIRST
        try:
            while True:
                heads = self._etcd.txn(success=[get(self._line(a), prefix=True, first_created=True)
                                                for a in accounts], resend=True)
                first = all(kvs(r) and decode(kvs(r)[0]["key"]) == place
                            for r, place in zip(heads["responses"], places))
                if first:
                    answer = self._etcd.txn(unlocked + [compare(place, "VERSION", "GREATER", 0) for place in places],
                                            then(give_up) + [delete(key) for key in places + [self._waiter(me)]],
                                            timeout=_time_left(give_up))
                    if answer.get("succeeded"):
                        places = []
                        return answer
                if time.monotonic() >= deadline:
                    locks = self._etcd.txn(success=[get(self._lock(a)) for a in accounts],
                                           resend=True)["responses"]
                    raise self._held(accounts, locks)
                time.sleep(pause)
                pause = min(pause * 2, POLL_MOST)
        finally:
            if places:
                self._etcd.txn(success=[delete(key) for key in places + [self._waiter(me)]], resend=True)

    def _held(self, accounts, lock_ranges):
        for account, response in zip(accounts, lock_ranges):
            if kvs(response):
                return LockHeld(account, decode(kvs(response)[0]["value"]), self._ttl)
        return LockHeld(accounts[0], "earlier waiting requests", 0.01)

    # ---- leases and holders ------------------------------------------------------------------------------

    def _renew(self, business, account, token, lookup):
        answer = self._etcd.txn(self._holder(business, account, token),
                                [get(self._lock(account)), get(self._amount(account))] + self._record_ranges(lookup),
                                resend=True)
        if not answer.get("succeeded"):
            raise NotLockHolder(business, account, token)
        ttl = self._etcd.keep_alive(kvs(answer["responses"][0])[0].get("lease"))
        if ttl is None:
            raise NotLockHolder(business, account, token)
        return LockGrant(token, ttl, self._cents(answer["responses"][1]),
                         self._recorded(answer["responses"][2:], lookup))

    def _revoke_in_background(self, lease):
        """Revoke lease, trying again while etcd does not answer, for at most LOCK_TTL (when it would expire)."""
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
        return [compare(self._lock(account), "CREATE", "EQUAL", token),
                compare(self._lock(account), "VALUE", "EQUAL", business)]

    def _holds(self, business, account, token):
        return bool(self._etcd.txn(self._holder(business, account, token), resend=True).get("succeeded"))

    def _release_op(self, business, account, token):
        return nested(self._holder(business, account, token), [delete(self._lock(account))])

    def _give_back(self, business, *held):
        ops = [self._release_op(business, account, token) for group in held for account, token in group.items()]
        if ops:
            self._etcd.txn(success=ops, resend=True)

    # ---- operation records -------------------------------------------------------------------------------

    def _record_ranges(self, op_ids):
        return [get(self._p + f"o/{kind}/{op_id}") for op_id in op_ids for kind in ("k", "r")]

    def _recorded(self, responses, op_ids):
        now, recorded = self._wall_clock(), {}
        for index, op_id in enumerate(op_ids):
            for keyed, response in zip((True, False), responses[2 * index:2 * index + 2]):
                record = self._live_record(response, keyed, now)
                if record is not None:
                    recorded[op_id] = {"request": record["request"], "result": record["result"]}
        return recorded

    def _recorded_results(self, operations):
        """None if no operation id is recorded; the first results if all are, for the same requests."""
        if not operations:
            return None
        answer = self._etcd.txn(success=self._record_ranges([op["id"] for op in operations]), resend=True)
        found = self._recorded(answer["responses"], [op["id"] for op in operations])
        if not found:
            return None
        if all(op["id"] in found and found[op["id"]]["request"] == op["request"] for op in operations):
            return [found[op["id"]]["result"] for op in operations]
        raise OperationConflict("an operation id of this commit is recorded for another request")

    def _live_record(self, response, keyed, now):
        if not kvs(response):
            return None
        record = json.loads(decode(kvs(response)[0]["value"]))
        return record if record["at"] >= now - self._retention[keyed] else None

    def _require_room(self, operations):
        for keyed in (True, False):
            needed = sum(1 for op in operations if op.get("keyed", True) == keyed)
            if not needed:
                continue
            prefix = self._p + ("o/k/" if keyed else "o/r/")
            counted = self._etcd.txn(success=[get(prefix, prefix=True, count_only=True)], resend=True)
            held = count(counted["responses"][0])
            if held + needed > self._limit[keyed]:
                self._require_room_among_live(prefix, keyed, needed)

    def _require_room_among_live(self, prefix, keyed, needed):
        """Near the cap, count only records within their retention, dropping the others (their etcd lease may
        outlive them by a span); refuse if there is still no room, saying when the oldest live one expires."""
        now, oldest_kept = self._wall_clock(), self._wall_clock() - self._retention[keyed]
        made = [(json.loads(decode(kv["value"]))["at"], decode(kv["key"]))
                for kv in kvs(self._etcd.txn(success=[get(prefix, prefix=True)], resend=True)["responses"][0])]
        expired = [key for at, key in made if at < oldest_kept]
        for start in range(0, len(expired), 1000):
            self._etcd.txn(success=[delete(key) for key in expired[start:start + 1000]], resend=True)
        live = sorted(at for at, _ in made if at >= oldest_kept)
        if len(live) + needed > self._limit[keyed]:
            raise RecordsFull("idempotency" if keyed else "commit retry",
                              max(1.0, live[0] + self._retention[keyed] - now))

    def _put_record(self, op):
        keyed = op.get("keyed", True)
        at = int(self._wall_clock())
        value = json.dumps({"request": op["request"], "result": op["result"], "at": at}, separators=(",", ":"))
        return put(self._record(op), value, self._record_lease(keyed, at))

    def _record_lease(self, keyed, at):
        """One etcd lease for the records made in the same span, outliving their retention by at most a span."""
        span = at // RECORD_LEASE_SPAN
        with self._mutex:
            lease = self._record_leases.get((keyed, span))
            if lease is None:
                lease = self._etcd.grant(self._retention[keyed] + 2 * RECORD_LEASE_SPAN)
                self._record_leases = {key: value for key, value in self._record_leases.items() if key[1] >= span}
                self._record_leases[(keyed, span)] = lease
            return lease

    # ---- keys --------------------------------------------------------------------------------------------

    def _amount(self, account):
        return f"{self._p}a/{account}"

    def _lock(self, account):
        return f"{self._p}l/{account}"

    def _line(self, account):
        return f"{self._p}q/{account}/"

    def _waiter(self, me):
        return f"{self._p}w/{me}"

    def _place(self, account, me):
        return f"{self._p}q/{account}/{me}"

    def _record(self, op):
        return f"{self._p}o/{'k' if op.get('keyed', True) else 'r'}/{op['id']}"

    @staticmethod
    def _cents(response):
        return int(decode(kvs(response)[0]["value"])) if kvs(response) else None


def _time_left(give_up):
    """Seconds before give_up, for an etcd call that takes a lock; StoreUnavailable if too few are left."""
    left = give_up - time.monotonic()
    if left < SHORTEST_CALL:
        raise StoreUnavailable("etcd was too slow to lock within the caller's wait; nothing was taken")
    return left

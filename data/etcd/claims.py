"""A lock request taken over by a later attempt of itself (data/etcd/store.py).

The caller's id for its request (its call) is kept beside each lock granted to it: g/{account}, put in the lock's
own transaction under the lock's lease. An attempt of the same request sent to another data server, once the first
went unanswered (its data server paused, say), is answered with the locks the first attempt was granted, instead of
waiting behind them until their leases run out. Taking them over puts each lock anew (its token, the create
revision, stays): the attempt they were granted to, if it finishes after its caller gave up, finds their mod
revision moved on and gives nothing back.
"""
from data.etcd.gateway import compare, decode, delete, get, kvs, put
from data.etcd.lines import time_left


def held_by(keys, business, account, token):
    """The compares that hold while the lock on account is business's, under token."""
    lock = keys.lock(account)
    return [compare(lock, "CREATE", "EQUAL", token), compare(lock, "VALUE", "EQUAL", business)]


def give_back_late(gateway, keys, business, accounts, token, taken_at):
    """Release the locks an attempt took at revision taken_at, finished after its caller gave up, unless another
    attempt of the same request took them over since (which put them anew, moving their mod revision on)."""
    checks = [c for account in accounts for c in (
        *held_by(keys, business, account, token), compare(keys.lock(account), "MOD", "EQUAL", taken_at))]
    gateway.txn(checks, [delete(keys.lock(account)) for account in accounts], resend=True)


class Claim:
    """What one lock request may take over; reads: what each look at the locks also reads for it."""

    def __init__(self, gateway, keys, business, accounts, call, then_reads):
        self._etcd, self._keys = gateway, keys
        self._business, self._accounts, self._call = business, accounts, call
        self._then_reads = then_reads           # what the request reads when it takes the locks
        self.reads = [get(keys.grant(account)) for account in accounts]
        self.token = None                       # the locks' token, once taken over

    def take_over(self, responses, give_up):
        """responses: the locks' reads, then self.reads'. The answer of the transaction that took the locks over,
        the request's reads last; None if they are not all this request's."""
        count = len(self._accounts)
        found = [kvs(response) for response in responses[:2 * count]]
        if not all(found):
            return None
        locks, grants = [kv[0] for kv in found[:count]], [kv[0] for kv in found[count:]]
        token = int(locks[0]["create_revision"])
        if any(decode(lock["value"]) != self._business or int(lock["create_revision"]) != token for lock in locks):
            return None
        if any(decode(grant["value"]) != self._call or int(grant["mod_revision"]) != token for grant in grants):
            return None
        checks = []
        for account in self._accounts:
            grant = self._keys.grant(account)
            checks += [*held_by(self._keys, self._business, account, token), compare(grant, "MOD", "EQUAL", token),
                       compare(grant, "VALUE", "EQUAL", self._call)]
        success = [put(self._keys.lock(account), self._business, lock.get("lease"))
                   for account, lock in zip(self._accounts, locks)]
        answer = self._etcd.txn(checks, success + self._then_reads, timeout=time_left(give_up))
        if not answer.get("succeeded"):
            return None
        self.token = token
        return answer

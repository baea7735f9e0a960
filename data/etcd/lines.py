"""Waiting for accounts on the etcd store (data/etcd/store.py): first in this process's own lines
(data/etcd/local_lines.py), then, while another data server's lock or waiter is in the way, in etcd's lines, which every
data server shares: q/{account}/{id}, one place for each waiting request under a lease, ordered by create revision,
and w/{id}, the request itself, once, to count them.

A request takes its locks in the one transaction that finds the accounts free and no one ahead of it in line.
"""
import math
import threading
import time
import uuid

from data.etcd.gateway import LeaseGone, compare, decode, delete, get, kvs, no_key_under, put
from data.etcd.groups import NotSent
from data.metrics import LOCK_WAIT_SECONDS
from data.store import LockHeld, StoreUnavailable

POLL_FIRST_SECONDS, POLL_MOST_SECONDS = 0.002, 0.02     # between looks at a line while waiting
# A place in line outlives its waiter's wait by this much and no more: a waiter cut off from etcd cannot take its
# place out itself, and until the place expires it holds back everyone behind it.
LINE_LEASE_MARGIN_SECONDS = 1.0
# A lock is taken only while its caller still waits for the answer: within its wait and this much more, which
# must be less than the business servers' DATA_TIMEOUT (callers that send X-Answer-By bound it themselves).
GRANT_GRACE_SECONDS = 0.5
SHORTEST_CALL_SECONDS = 0.05    # with less left than this, a lock is not even tried


class TakingUnanswered(StoreUnavailable):
    """A transaction that would take a lock went unanswered: it may have been applied."""


class WaitSpent(StoreUnavailable):
    """Too little of the caller's wait is left to ask etcd for a lock: nothing was asked, nothing taken."""


class EtcdLines:
    """The lines of one data server's requests for accounts; local: the LocalLines the store also tells of the
    locks it grants and releases."""

    def __init__(self, gateway, groups, keys, local, max_waiters, lock_ttl):
        self._etcd, self._groups, self._keys, self._local = gateway, groups, keys, local
        self._ttl = lock_ttl
        self._mutex = threading.Lock()
        self._max_waiters = max_waiters     # waiting requests hold this process's threads: keep some free
        self._waiters = 0
        self._in_etcd_line = 0              # of them, those with a place in etcd's lines

    def when_free(self, accounts, wait, then, answer_by=math.inf, claim=None, grace=GRANT_GRACE_SECONDS):
        """Run then(give_up)'s operations in one transaction once no account is locked and no one waits for one
        ahead of this request, waiting up to `wait` seconds in line (and not past answer_by, when the caller
        stops waiting); raise LockHeld otherwise. give_up: the time (monotonic) after which the caller no longer
        waits for the answer, so nothing may be taken. claim: what the store takes over if the locks in the way
        are already this very request's (granted to an earlier attempt of it): its reads go with every look at
        the locks, and claim.take_over(responses, give_up) answers in place of then() or says None."""
        deadline = min(time.monotonic() + wait, answer_by)
        give_up = min(deadline + grace, answer_by)
        # What this process believes held may have been released through another data server: etcd is asked.
        if not self._local.waiting(accounts):
            answer = self._try_now(accounts, then, give_up, claim)
            if answer.get("succeeded"):
                return answer
            if wait <= 0:
                raise self._held(accounts, answer["responses"])
        elif wait <= 0:
            raise LockHeld(accounts[0], "earlier waiting requests", 0.01)
        return self._wait_turn(accounts, deadline, give_up, then, claim)

    def _try_now(self, accounts, then, give_up, claim):
        """then()'s transaction if no account is locked and no one is in etcd's line for one, or the claim's if the
        locks are this very request's; else the refused answer, its responses the locks (and the claim's reads)."""
        answer = self._take([compare(self._keys.lock(a), "VERSION", "EQUAL", 0) for a in accounts]
                            + [no_key_under(self._keys.line(a)) for a in accounts], then, give_up,
                            failure=self._lock_reads(accounts) + (claim.reads if claim else []), grouped_by=accounts)
        if answer.get("succeeded") or claim is None:
            return answer
        return claim.take_over(answer["responses"], give_up) or answer

    def _take(self, compares, then, give_up, success=(), failure=(), grouped_by=None):
        """then()'s transaction; sent with other requests' if grouped_by names the keys (accounts) it touches."""
        operations = then(give_up) + list(success)
        timeout = time_left(give_up)
        try:
            if grouped_by is not None:
                return self._groups.txn(grouped_by, compares, operations, failure, timeout)
            return self._etcd.txn(compares, operations, failure, timeout=timeout)
        except (NotSent, LeaseGone):
            raise
        except StoreUnavailable as error:
            raise TakingUnanswered(str(error)) from None

    def _wait_turn(self, accounts, deadline, give_up, then, claim):
        """Wait first in this process's lines for the accounts, then, while their locks were granted here, for
        this process to release them; then, if another data server's lock or waiter is in the way, in etcd's
        lines (shared by every data server); then run then()."""
        with self._mutex:
            if self._waiters >= self._max_waiters:
                raise LockHeld(accounts[0], "earlier waiting requests", 0.01)
            self._waiters += 1
        started, ticket = time.monotonic(), self._local.join(accounts)
        try:
            return self._wait_first_then_take(accounts, deadline, give_up, then, claim, ticket)
        except WaitSpent:
            # The caller's wait ran out in line, the accounts held: to it, as if they stayed held past it.
            raise LockHeld(accounts[0], "earlier requests", 0.01) from None
        finally:
            self._local.leave(ticket, accounts)
            LOCK_WAIT_SECONDS.observe(time.monotonic() - started)
            with self._mutex:
                self._waiters -= 1

    def _wait_first_then_take(self, accounts, deadline, give_up, then, claim, ticket):
        """First in this process's lines, then until the locks are free (or granted to this very request)."""
        if not self._local.wait_first(ticket, accounts, deadline):
            raise self._held(accounts, self._locks(accounts))
        pause = POLL_FIRST_SECONDS
        while True:
            answer = self._try_now(accounts, then, give_up, claim)
            if answer.get("succeeded"):
                return answer
            if time.monotonic() >= deadline:
                raise self._held(accounts, answer["responses"])
            locked = {a: int(kvs(response)[0]["create_revision"]) if kvs(response) else None
                      for a, response in zip(accounts, answer["responses"])}
            if not any(locked.values()) or not self._local.held_here(locked):
                return self._wait_in_line(accounts, deadline, give_up, then)
            # Woken at once by a release here; one through another data server is seen at the next look.
            self._local.wait_unheld(accounts, min(deadline, time.monotonic() + pause))
            pause = min(pause * 2, POLL_MOST_SECONDS)

    def _wait_in_line(self, accounts, deadline, give_up, then):
        """Join every account's line in etcd in one transaction (one revision: one order for all lines), wait
        until first in each and the locks are free, then run then()'s operations in the transaction that leaves."""
        me = uuid.uuid4().hex
        # A place in every account's line, and one key for the request itself, so that waiters count once.
        places = [self._keys.place(account, me) for account in accounts]
        lease = self._etcd.grant(deadline - time.monotonic() + LINE_LEASE_MARGIN_SECONDS)
        self._etcd.txn(success=[put(key, "", lease) for key in places + [self._keys.waiter(me)]], resend=True)
        with self._mutex:
            self._in_etcd_line += 1
        unlocked = [compare(self._keys.lock(a), "VERSION", "EQUAL", 0) for a in accounts]
        pause = POLL_FIRST_SECONDS
        try:
            while True:
                heads = self._etcd.txn(success=[get(self._keys.line(a), prefix=True, first_created=True)
                                                for a in accounts], resend=True)
                first = all(kvs(r) and decode(kvs(r)[0]["key"]) == place
                            for r, place in zip(heads["responses"], places))
                if first:
                    answer = self._take(unlocked + [compare(place, "VERSION", "GREATER", 0) for place in places],
                                        then, give_up, [delete(key) for key in places + [self._keys.waiter(me)]])
                    if answer.get("succeeded"):
                        places = []
                        return answer
                if time.monotonic() >= deadline:
                    raise self._held(accounts, self._locks(accounts))
                self._local.pause(pause)
                pause = min(pause * 2, POLL_MOST_SECONDS)
        finally:
            with self._mutex:
                self._in_etcd_line -= 1
            if places:
                self._etcd.txn(success=[delete(key) for key in places + [self._keys.waiter(me)]], resend=True)

    def _lock_reads(self, accounts):
        return [get(self._keys.lock(a)) for a in accounts]

    def _locks(self, accounts):
        return self._etcd.txn(success=self._lock_reads(accounts), resend=True)["responses"]

    def waiting_here(self):
        """This process's waiting requests that have no key in etcd's lines (yet)."""
        with self._mutex:
            return self._local.waiting() - self._in_etcd_line

    def _held(self, accounts, lock_ranges):
        for account, response in zip(accounts, lock_ranges):
            if kvs(response):
                return LockHeld(account, decode(kvs(response)[0]["value"]), self._ttl)
        return LockHeld(accounts[0], "earlier waiting requests", 0.01)


def time_left(give_up):
    """Seconds before give_up, for an etcd call that takes a lock; StoreUnavailable if too few are left."""
    left = give_up - time.monotonic()
    if left < SHORTEST_CALL_SECONDS:
        raise WaitSpent("etcd was too slow to lock within the caller's wait; nothing was taken")
    return left

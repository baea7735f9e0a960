"""What one etcd data server knows without asking etcd: its own waiting requests, in line per account, and the
locks it granted that are not known to be released or expired.

Only the first of this process's requests for an account goes on to etcd's line, and while the lock it waits for
was granted here, it is woken the moment this process releases it instead of asking etcd again and again. Both only
save questions: etcd's transaction decides every grant, and a lock released through another data server is seen at
the next look (lines.py), never waited for.
"""
import collections
import threading
import time
from typing import NamedTuple


class _Granted(NamedTuple):
    token: int          # the lock's token (its create revision in etcd)
    ends: float         # time.monotonic() its lease ends by at the latest


class LocalLines:
    """FIFO lines per account of this process's waiting requests, and the locks granted here."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._changed = threading.Condition()
        self._lines = collections.defaultdict(collections.deque)    # account -> tickets, first in line first
        self._granted = {}                                          # account -> _Granted
        self._tickets = 0

    def waiting(self, accounts=None):
        """How many requests wait here (for any of accounts, if given)."""
        with self._changed:
            if accounts is None:
                return len({ticket for line in self._lines.values() for ticket in line})
            return len({ticket for account in accounts for ticket in self._lines.get(account, ())})

    def join(self, accounts):
        """A place at the end of every account's line at once (one order for all lines: no deadlock); a ticket."""
        with self._changed:
            self._tickets += 1
            for account in accounts:
                self._lines[account].append(self._tickets)
            return self._tickets

    def wait_first(self, ticket, accounts, deadline):
        """Wait until ticket is first in every account's line, until deadline (time.monotonic()); whether it is."""
        with self._changed:
            return self._changed.wait_for(lambda: all(self._lines[a][0] == ticket for a in accounts),
                                          max(0.0, deadline - self._clock()))

    def leave(self, ticket, accounts):
        with self._changed:
            for account in accounts:
                line = self._lines[account]
                line.remove(ticket)
                if not line:
                    del self._lines[account]
            self._changed.notify_all()

    def granted(self, accounts, token, ends):
        """This process granted locks on accounts under token, whose lease ends by `ends` (time.monotonic())."""
        with self._changed:
            for account in accounts:
                self._granted[account] = _Granted(token, ends)

    def released(self, accounts):
        """The locks on accounts are released, or no longer known to be held: whoever waits for them may try."""
        with self._changed:
            for account in accounts:
                self._granted.pop(account, None)
            self._changed.notify_all()

    def held_here(self, locks):
        """Whether any lock of locks ({account: token, None if unlocked}, as etcd has them now) was granted through
        this process; what it believed of the others (released through another data server) is dropped."""
        with self._changed:
            for account, token in locks.items():
                if account in self._granted and self._granted[account].token != token:
                    del self._granted[account]
            return bool(self._held(locks))

    def wait_unheld(self, accounts, deadline):
        """Wait until no account of accounts is locked through this process (released, or its lease ended), or
        until deadline (time.monotonic())."""
        with self._changed:
            while self._held(accounts):
                now = self._clock()
                if now >= deadline:
                    return
                self._changed.wait(min(min(self._held(accounts)), deadline) - now)

    def _held(self, accounts):
        """The ends of the leases through this process on accounts that are not over yet."""
        now = self._clock()
        return [self._granted[a].ends for a in accounts if a in self._granted and self._granted[a].ends > now]

    def pause(self, seconds):
        """Sleep up to seconds, waking early when this process releases a lock or a request leaves a line."""
        with self._changed:
            self._changed.wait(seconds)

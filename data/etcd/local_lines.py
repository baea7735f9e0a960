"""What one etcd data server knows without asking etcd: its own waiting requests, in line per account, and the
locks it granted that are not known to be released or expired.

Only the first of this process's requests for an account goes on to etcd's line, and while the lock it waits for
was granted here, it waits for this process to release it instead of asking etcd again and again. Both are
shortcuts to the same answer: etcd's transaction still decides every grant.
"""
import collections
import threading
import time


class LocalLines:
    """FIFO lines per account of this process's waiting requests, and the locks granted here."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._changed = threading.Condition()
        self._lines = collections.defaultdict(collections.deque)    # account -> tickets, first in line first
        self._granted = {}                                          # account -> time its lease ends at the latest
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

    def granted(self, accounts, ends):
        """This process granted locks on accounts whose lease ends by `ends` (time.monotonic()) at the latest."""
        with self._changed:
            for account in accounts:
                self._granted[account] = ends

    def released(self, accounts):
        """The locks on accounts are released, or no longer known to be held: whoever waits for them may try."""
        with self._changed:
            for account in accounts:
                self._granted.pop(account, None)
            self._changed.notify_all()

    def held_here(self, accounts):
        """Whether any of accounts is locked through this process, as far as it knows."""
        with self._changed:
            return bool(self._held(accounts))

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
        return [self._granted[a] for a in accounts if self._granted.get(a, now) > now]

    def pause(self, seconds):
        """Sleep up to seconds, waking early when this process releases a lock or a request leaves a line."""
        with self._changed:
            self._changed.wait(seconds)

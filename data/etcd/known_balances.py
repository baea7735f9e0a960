"""The a/ values this data server read under the locks it granted: a commit under the same lock is numbered from
them without reading again (data/etcd/store.py checks in its transaction that they still hold)."""
import threading
import time
from typing import NamedTuple

KNOWN_BALANCES = 10_000             # balances read at lock time kept before those of expired locks are swept


class KnownBalance(NamedTuple):
    token: int                  # the lock it was read under
    value: str | None           # the account's a/ value as read under that lock; None: no such account yet
    forget_at: float            # time.monotonic() by which the lock's lease has ended
    holds: tuple = ()           # its held holds as read (or written) under that lock: only the holder changes them


class KnownBalances:
    def __init__(self):
        self._mutex = threading.Lock()
        self._known = {}            # account -> KnownBalance

    def get(self, account):
        """The KnownBalance of account, or None."""
        with self._mutex:
            return self._known.get(account)

    def tokens(self, accounts):
        """{account: the token of the lock this process last read it under} of those of accounts it knows."""
        with self._mutex:
            return {account: self._known[account].token for account in accounts if account in self._known}

    def remember(self, known):
        """Keep {account: KnownBalance}, each until its lock's lease ends at the latest."""
        with self._mutex:
            if len(self._known) >= KNOWN_BALANCES:
                now = time.monotonic()
                self._known = {a: kept for a, kept in self._known.items() if kept.forget_at > now}
            self._known.update(known)

    def forget(self, accounts):
        with self._mutex:
            for account in accounts:
                self._known.pop(account, None)

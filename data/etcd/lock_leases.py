"""The etcd leases the etcd store's locks live under (data/etcd/store.py): a data server grants one every
LOCK_LEASE_SHARE_SECONDS for every lock it takes in that time, so a lock lives from LOCK_TTL to LOCK_TTL +
LOCK_LEASE_SHARE_SECONDS, and one lease's grant is shared by many locks."""
import math
import threading
import time
from typing import NamedTuple

from data.etcd.lines import time_left
from data.store import StoreUnavailable

REVOKE_PAUSE_SECONDS = 0.2          # between tries at revoking the lease of a lock lost in transit
LOCK_LEASE_SHARE_SECONDS = 1        # one lease is given to new locks this long (etcd's leases are whole seconds)


class _LockLease(NamedTuple):
    lease: str | None           # the etcd lease new locks share; None: none yet
    asked_at: float             # time.monotonic() before it was asked for


_NO_LOCK_LEASE = _LockLease(None, -math.inf)


class SharedLockLeases:
    """The lease new locks take, granted anew every LOCK_LEASE_SHARE_SECONDS; life: seconds one lives at most."""

    def __init__(self, gateway, lock_ttl):
        self._etcd, self._ttl = gateway, lock_ttl
        self.life = lock_ttl + LOCK_LEASE_SHARE_SECONDS
        self._current = _NO_LOCK_LEASE
        self._mutex = threading.Lock()

    def current(self, give_up):
        """The lease a lock taken now goes under; StoreUnavailable if it cannot be had before give_up (monotonic)."""
        if not self._mutex.acquire(timeout=time_left(give_up)):
            raise StoreUnavailable("etcd was too slow to grant a lease within the caller's wait; nothing was taken")
        try:
            lease, asked_at = self._current
            if time.monotonic() - asked_at >= LOCK_LEASE_SHARE_SECONDS:
                asked_at = time.monotonic()
                lease = self._etcd.grant(self.life, timeout=time_left(give_up))
                self._current = _LockLease(lease, asked_at)
            return lease
        finally:
            self._mutex.release()

    def revoke(self, lease):
        """No new lock takes lease, and it is revoked in the background, tried again while etcd does not answer,
        for at most LOCK_TTL (after which the lease has at most LOCK_LEASE_SHARE_SECONDS left to live)."""
        with self._mutex:
            if self._current.lease == lease:
                self._current = _NO_LOCK_LEASE

        def revoke():
            deadline = time.monotonic() + self._ttl
            while time.monotonic() < deadline:
                try:
                    self._etcd.revoke(lease)
                    return
                except StoreUnavailable:
                    time.sleep(REVOKE_PAUSE_SECONDS)

        threading.Thread(target=revoke, name="lease-revoke", daemon=True).start()

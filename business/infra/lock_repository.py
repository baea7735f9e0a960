"""Leases on accounts, granted by the data server."""
import abc
from dataclasses import dataclass, field

from shared.money import parse_cents


class AccountLocked(Exception):
    """Someone else holds the account's lease."""

    def __init__(self, account, retry_after):
        super().__init__(f"account {account} is locked")
        self.account, self.retry_after = account, retry_after

    @classmethod
    def from_answer(cls, account, payload):
        """From the data server's 423 answer, which says in milliseconds when to try again."""
        return cls(account, payload.get("retry_after_ms", 100) / 1000)


@dataclass(frozen=True)
class Lease:
    account: str
    token: int
    amount_cents: int | None        # None: the account does not exist yet
    recorded: dict = field(default_factory=dict)   # operation id -> {"request", "result"}, as asked by lookup


class LockRepository(abc.ABC):
    @abc.abstractmethod
    def acquire_all(self, accounts, lookup=(), wait=0.0):
        """Lease every one of accounts at once and return {account: Lease}; the lookup's records come with them.

        Raise AccountLocked, leasing none, if one is still held (or waited for by earlier requests) after `wait`
        seconds. Nothing is held while waiting.
        """

    @abc.abstractmethod
    def release(self, lease):
        """Give the lease back; one already expired or taken over is no error."""


class HttpLockRepository(LockRepository):
    def __init__(self, data_client):
        self._data = data_client
        self._prefix = data_client.business_id

    def acquire_all(self, accounts, lookup=(), wait=0.0):
        body = {"accounts": list(accounts), "lookup": list(lookup), "wait_ms": int(wait * 1000)}
        status, payload = self._data.call("POST", f"/getLocks/{self._prefix}", body, server_wait=wait)
        if status == 423:
            raise AccountLocked.from_answer(payload.get("account", accounts[0]), payload)
        recorded = payload.get("operations") or {}
        return {lock["account"]: Lease(lock["account"], lock["token"],
                                       None if lock["amount"] is None else parse_cents(lock["amount"]), recorded)
                for lock in payload["locks"]}

    def release(self, lease):
        self._data.call("POST", f"/unLock/{self._prefix}/{lease.account}", {"token": lease.token})

"""Leases on accounts, granted by the data server."""
from business.application.ports import AccountLocked, Lease, LockRepository
from shared.money import parse_cents


def account_locked(account, payload):
    """AccountLocked from the data server's 423 answer, which says in milliseconds when to try again."""
    return AccountLocked(account, payload.get("retry_after_ms", 100) / 1000)


class HttpLockRepository(LockRepository):
    def __init__(self, data_client):
        self._data = data_client
        self._prefix = data_client.business_id

    def acquire_all(self, accounts, lookup=(), wait=0.0):
        body = {"accounts": list(accounts), "lookup": list(lookup), "wait_ms": int(wait * 1000)}
        status, payload = self._data.call("POST", f"/getLocks/{self._prefix}", body, server_wait=wait)
        if status == 423:
            raise account_locked(payload.get("account", accounts[0]), payload)
        recorded = payload.get("operations") or {}
        return {lock["account"]: Lease(lock["account"], lock["token"],
                                       None if lock["amount"] is None else parse_cents(lock["amount"]), recorded)
                for lock in payload["locks"]}

    def release(self, lease):
        self._data.call("POST", f"/unLock/{self._prefix}/{lease.account}", {"token": lease.token})

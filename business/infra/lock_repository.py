"""Leases on accounts, granted by the data server."""
import uuid

from business.application.ports import Lease, LeaseLost, LockRepository
from business.infra.hold_repository import hold_of
from shared.money import parse_cents


class HttpLockRepository(LockRepository):
    def __init__(self, data_client):
        self._data = data_client
        self._prefix = data_client.business_id

    def acquire_all(self, accounts, lookup=(), wait=0.0):
        # One call id for every data server it may be sent to: a later attempt takes over what an earlier was granted.
        body = {"accounts": list(accounts), "lookup": list(lookup), "wait_ms": int(wait * 1000),
                "call": uuid.uuid4().hex}
        payload = self._data.call("POST", f"/getLocks/{self._prefix}", body, server_wait=wait)
        recorded = payload.get("operations") or {}
        return {lock["account"]: Lease(lock["account"], lock["token"],
                                       None if lock["amount"] is None else parse_cents(lock["amount"]), recorded,
                                       lock.get("owner"), tuple(hold_of(hold) for hold in lock.get("holds", ())))
                for lock in payload["locks"]}

    def release(self, lease):
        try:
            self._data.call("POST", f"/unLock/{self._prefix}/{lease.account}", {"token": lease.token})
        except LeaseLost:
            pass    # expired or taken over already: nothing of it is left to give back

"""HTTP access to the data servers: pools of keep-alive connections (urllib3), a timeout on every call, and the
one table of what each of the data server's refusals means to the application."""
import json
from urllib.parse import urlencode

from business.application.ports import (
    AccountLocked,
    AccountMissing,
    DataRefused,
    DataStoreFull,
    DataUnavailable,
    HistoryBehind,
    HoldIdTaken,
    HoldMissing,
    HoldsAtCap,
    IdempotencyStoreFull,
    LeaseLost,
    OperationConflict,
)
from shared.failover import FailoverPools, NotAnswered


def _locked(payload, headers):
    # The data server's 423 says in milliseconds when to try again.
    return AccountLocked(payload.get("account"), payload.get("retry_after_ms", 100) / 1000)


# The data server's answers other than 2xx that the application acts on, by (status, error code); any other 5xx
# is DataUnavailable and any other 4xx DataRefused.
DATA_REFUSALS = {
    (404, "account_not_found"): lambda payload, headers: AccountMissing(payload.get("message")),
    (404, "hold_not_found"): lambda payload, headers: HoldMissing(payload.get("message")),
    (409, "not_lock_holder"): lambda payload, headers: LeaseLost(payload.get("message")),
    (409, "hold_conflict"): lambda payload, headers: HoldIdTaken(payload.get("hold")),
    (409, "operation_conflict"): lambda payload, headers: OperationConflict(payload.get("message")),
    (423, "locked"): _locked,
    (503, "idempotency_store_full"): lambda payload, headers: IdempotencyStoreFull(
        int(headers.get("Retry-After", "1"))),
    (503, "store_full"): lambda payload, headers: DataStoreFull(int(headers.get("Retry-After", "30"))),
    (503, "history_unavailable"): lambda payload, headers: HistoryBehind(int(headers.get("Retry-After", "1"))),
    (503, "holds_full"): lambda payload, headers: HoldsAtCap(int(headers.get("Retry-After", "5"))),
}


class DataServerClient:
    """Calls one of the data servers (shared/failover.py says which); a write is sent again only where the
    repositories know it to be idempotent."""

    def __init__(self, base_urls, business_id, token, timeout, request_id_source=lambda: None, tls=None):
        self.business_id = business_id
        self._authorization = f"Bearer {token}"
        self._timeout = timeout
        self._request_id_source = request_id_source
        self._servers = FailoverPools(base_urls, tls=tls, stamp_answer_by=True)

    def call(self, method, path, body=None, params=None, server_wait=0.0, resend=True):
        """Send one request; return the JSON body of a 2xx answer, raise the port's exception for any other.

        server_wait: seconds the data server was asked to wait for a held account, added to the timeout.
        resend: the request may go to the next data server when one took it and failed (a lease or a read taken
        twice is harmless: a lease nobody knows of expires, and fencing refuses writes under it).
        """
        headers = {"Authorization": self._authorization}
        request_id = self._request_id_source()
        if request_id:
            headers["X-Request-ID"] = request_id
        encoded = None
        if body is not None:
            encoded = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        url = f"{path}?{urlencode(params)}" if params else path
        try:
            response, payload = self._servers.send(method, url, encoded, headers, self._timeout + server_wait,
                                                   resend)
        except NotAnswered as error:
            raise DataUnavailable(f"data server: {error}") from None
        status = response.status
        if status < 300:
            return payload
        refusal = DATA_REFUSALS.get((status, payload.get("error")))
        if refusal is not None:
            raise refusal(payload, response.headers)
        if status >= 500:
            raise DataUnavailable(f"data server {method} {path}: {status} {payload.get('error')}")
        raise DataRefused(status, payload.get("error"), payload.get("message"))

"""HTTP access to the data servers: pools of keep-alive connections (urllib3), a timeout on every call."""
import json
from urllib.parse import urlencode

from business.application.ports import DataRefused, DataUnavailable, IdempotencyStoreFull
from shared.failover import FailoverPools, NotAnswered


class DataServerClient:
    """Calls one of the data servers (shared/failover.py says which); a write is sent again only where the
    repositories know it to be idempotent."""

    def __init__(self, base_urls, business_id, token, timeout, request_id_source=lambda: None):
        self.business_id = business_id
        self._authorization = f"Bearer {token}"
        self._timeout = timeout
        self._request_id_source = request_id_source
        self._servers = FailoverPools(base_urls)

    def call(self, method, path, body=None, params=None, server_wait=0.0):
        """Send one request; return (status, JSON body) for 2xx, 404, 409 and 423, raise otherwise.

        Raise IdempotencyStoreFull for the one 5xx that promises nothing was applied, DataUnavailable for others.
        server_wait: seconds the data server was asked to wait for a held account, added to the timeout.
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
            response, payload = self._servers.send(method, url, encoded, headers, self._timeout + server_wait)
        except NotAnswered as error:
            raise DataUnavailable(f"data server: {error}") from None
        status = response.status
        if status == 503 and payload.get("error") == "idempotency_store_full":
            raise IdempotencyStoreFull(int(response.headers.get("Retry-After", "1")))
        if status >= 500:
            raise DataUnavailable(f"data server {method} {path}: {status} {payload.get('error')}")
        if status < 300 or status in (404, 409, 423):
            return status, payload
        raise DataRefused(status, payload.get("error"), payload.get("message"))

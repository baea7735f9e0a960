"""HTTP access to the data server: one pool of keep-alive connections (urllib3), a timeout on every call."""
import json
from urllib.parse import urlencode

import urllib3

from business.application.ports import DataRefused, DataUnavailable, IdempotencyStoreFull

POOL_CONNECTIONS = 16       # kept open; a burst beyond opens more and closes them after


class DataServerClient:
    """Calls one of the data servers: the one that answered last, or the next when it does not take the
    connection (nothing was sent, so moving on is always safe). One that took a request and failed is not asked
    again for it: the caller decides, by the request's idempotency, whether to send it again; that goes to the
    next server."""

    def __init__(self, base_urls, business_id, token, timeout, request_id_source=lambda: None):
        self.business_id = business_id
        self._authorization = f"Bearer {token}"
        self._timeout = timeout
        self._request_id_source = request_id_source
        # Thread-safe; no retries inside: a write is sent again only where it is known to be idempotent.
        self._pools = [urllib3.connection_from_url(url, maxsize=POOL_CONNECTIONS, block=False, retries=False)
                       for url in base_urls]
        self._current = 0

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
        response, payload = self._send(method, url, encoded, headers, server_wait)
        status = response.status
        if status == 503 and payload.get("error") == "idempotency_store_full":
            raise IdempotencyStoreFull(int(response.headers.get("Retry-After", "1")))
        if status >= 500:
            raise DataUnavailable(f"data server {method} {path}: {status} {payload.get('error')}")
        if status < 300 or status in (404, 409, 423):
            return status, payload
        raise DataRefused(status, payload.get("error"), payload.get("message"))

    def _send(self, method, url, body, headers, server_wait):
        first = self._current
        for attempt in range(len(self._pools)):
            index = (first + attempt) % len(self._pools)
            try:
                response = self._pools[index].urlopen(method, url, body=body, headers=headers, retries=False,
                                                      timeout=urllib3.Timeout(total=self._timeout + server_wait))
                payload = json.loads(response.data)
            except urllib3.exceptions.ConnectTimeoutError:
                continue
            except (urllib3.exceptions.HTTPError, ValueError) as error:
                self._current = (index + 1) % len(self._pools)
                raise DataUnavailable(f"data server {index + 1} {method} {url}: {type(error).__name__}") from None
            # A server that fails (its store unreachable, say) is not the first one asked next time.
            self._current = index if response.status < 500 else (index + 1) % len(self._pools)
            return response, payload
        raise DataUnavailable(f"no data server took a connection for {method} {url}")

"""HTTP access to the data server: one pooled keep-alive session per thread, a timeout on every call."""
import threading

import requests
from requests.adapters import HTTPAdapter

from business.application.ports import DataRefused, DataUnavailable, IdempotencyStoreFull


class DataServerClient:
    def __init__(self, base_url, business_id, token, timeout, request_id_source=lambda: None):
        self.business_id = business_id
        self._base_url = base_url
        self._authorization = f"Bearer {token}"
        self._timeout = timeout
        self._request_id_source = request_id_source
        self._local = threading.local()

    def call(self, method, path, body=None, params=None, server_wait=0.0):
        """Send one request; return (status, JSON body) for 2xx, 404, 409 and 423, raise otherwise.

        Raise IdempotencyStoreFull for the one 5xx that promises nothing was applied, DataUnavailable for others.

        server_wait: seconds the data server was asked to wait for a held account, added to the timeout.
        """
        headers = {"Authorization": self._authorization}
        request_id = self._request_id_source()
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            response = self._session().request(method, self._base_url + path, json=body, params=params,
                                                headers=headers, timeout=self._timeout + server_wait)
            payload = response.json()
        except (requests.RequestException, ValueError) as error:
            raise DataUnavailable(f"data server {method} {path}: {type(error).__name__}") from None
        if response.status_code == 503 and payload.get("error") == "idempotency_store_full":
            raise IdempotencyStoreFull(int(response.headers.get("Retry-After", "1")))
        if response.status_code >= 500:
            raise DataUnavailable(f"data server {method} {path}: {response.status_code} {payload.get('error')}")
        if response.status_code < 300 or response.status_code in (404, 409, 423):
            return response.status_code, payload
        raise DataRefused(response.status_code, payload.get("error"), payload.get("message"))

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # The data server is named in settings: no proxy or .netrc lookups on every call.
            session.trust_env = False
            # No retries inside requests: a write is retried only where it is known to be idempotent.
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

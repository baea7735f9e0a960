"""HTTP access to the business servers: one keep-alive session per thread, a timeout on every call."""
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import requests
from requests.adapters import HTTPAdapter


@dataclass(frozen=True)
class Reply:
    status: int | None          # None: no answer (timeout, refused connection)
    body: dict
    seconds: float
    url: str
    replayed: bool = False

    @property
    def error(self):
        return self.body.get("error")


class BankApi:
    """One business server's API, as a client with a bearer token sees it."""

    def __init__(self, base_url, token, timeout, tls_ca=""):
        """tls_ca: the CA an https:// server's certificate must chain to ("": the system's)."""
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._verify = tls_ca or True
        self._local = threading.local()

    def deposit(self, account, amount, key=None, token=None):
        return self._send("POST", f"/deposit/{account}/{amount}", key, token)

    def withdraw(self, account, amount, key=None, token=None):
        return self._send("POST", f"/withdrawal/{account}/{amount}", key, token)

    def transfer(self, origin, target, amount, key=None, token=None):
        return self._send("POST", f"/transfer/{origin}/{target}/{amount}", key, token)

    def place_hold(self, origin, target, amount, expires_in=None, key=None, token=None):
        query = "" if expires_in is None else f"?expires_in={expires_in}"
        return self._send("POST", f"/holds/{origin}/{target}/{amount}{query}", key, token)

    def capture(self, hold_id, amount=None, key=None, token=None):
        """Capture the hold, whole (amount None) or that amount of it."""
        return self._send("POST", f"/holds/{hold_id}/capture" + ("" if amount is None else f"/{amount}"), key, token)

    def release(self, hold_id, key=None, token=None):
        return self._send("POST", f"/holds/{hold_id}/release", key, token)

    def hold(self, hold_id, token=None):
        return self._send("GET", f"/holds/{hold_id}", None, token)

    def holds(self, account, token=None):
        return self._send("GET", f"/accounts/{account}/holds", None, token)

    def balance(self, account, token=None):
        return self._send("GET", f"/balance/{account}", None, token)

    def history(self, account, limit=100, cursor=None, token=None):
        """A page of the account's statement, newest first; cursor: the next_cursor of the page before."""
        query = urlencode({"limit": limit, **({"cursor": cursor} if cursor else {})})
        return self._send("GET", f"/history/{account}?{query}", None, token)

    def open(self, account, key=None, token=None):
        return self._send("POST", f"/accounts/{account}", key, token)

    def account(self, account, token=None):
        return self._send("GET", f"/accounts/{account}", None, token)

    def accounts(self, limit=20, cursor=None, token=None):
        """A page of the caller's own accounts, in id order; cursor: the next_cursor of the page before."""
        query = urlencode({"limit": limit, **({"cursor": cursor} if cursor else {})})
        return self._send("GET", f"/accounts?{query}", None, token)

    def health(self):
        return self._send("GET", "/health", None, None)

    def _send(self, method, path, key, token):
        token = self._token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if key is not None:
            headers["Idempotency-Key"] = key
        url = self.base_url + path
        started = time.perf_counter()
        try:
            response = self._session().request(method, url, headers=headers, timeout=self._timeout)
        except requests.RequestException as error:
            return Reply(None, {"error": "no_answer", "message": type(error).__name__}, time.perf_counter() - started,
                         url)
        try:
            body = response.json()
        except ValueError:
            body = {"error": "not_json", "message": response.text[:200]}
        return Reply(response.status_code, body if isinstance(body, dict) else {"value": body},
                     time.perf_counter() - started, url, response.headers.get("Idempotent-Replayed") == "true")

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False      # the servers are named in settings: no proxy or .netrc lookups per call
            session.verify = self._verify
            for scheme in ("http://", "https://"):
                session.mount(scheme, HTTPAdapter(pool_connections=1, pool_maxsize=2, max_retries=0))
            self._local.session = session
        return session


def wait_until_healthy(apis, timeout):
    """Return the base URLs that did not answer /health with 200 within timeout seconds."""
    deadline = time.monotonic() + timeout
    waiting = list(apis)
    while waiting and time.monotonic() < deadline:
        waiting = [api for api in waiting if api.health().status != 200]
        if waiting:
            time.sleep(0.2)
    return [api.base_url for api in waiting]


STORE_HOLDS_ALL = "statements: every entry is in the statement store"
STATEMENT_STORE_WAIT_SECONDS = 30


def wait_for_statement_store(api, timeout=STATEMENT_STORE_WAIT_SECONDS):
    """A line on the statement store as a data server's /health tells it, once it holds every entry (the data
    server's backlog is 0) or timeout seconds have passed; None if the data server relays to none."""
    deadline = time.monotonic() + timeout
    while True:
        reply = api.health()
        health = reply.body if reply.status == 200 else {}
        if "relay" not in health and health:
            return None
        backlog = health.get("history_backlog")
        if backlog == 0:
            return STORE_HOLDS_ALL + f" (relayed by {health.get('relay')})"
        if time.monotonic() >= deadline:
            return (f"statements: {backlog} entries still in etcd after {timeout:.0f} s "
                    f"(relay {health.get('relay')}, alarm {health.get('relay_alarm')})")
        time.sleep(0.2)

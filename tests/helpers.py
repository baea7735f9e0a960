"""Test helpers used by more than one test module."""
import threading
import time

from client.clients import CheckClients

DATA_TOKENS = {"b1": "test-data-token-b1", "b2": "test-data-token-b2", "b3": "test-data-token-b3"}
CLIENT_TOKEN = "test-client-token"
OPERATOR_TOKEN = "test-operator-token"
OTHER_CLIENT_TOKEN, MALLORY_TOKEN = "other-client-token", "mallory-client-token"
# Whom the check runs as against the tests' business servers (business_environ's CLIENT_TOKENS).
CHECK_CLIENTS = CheckClients({"tester": CLIENT_TOKEN, "other": OTHER_CLIENT_TOKEN}, ("mallory", MALLORY_TOKEN),
                             OPERATOR_TOKEN)


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def wait_until(predicate, timeout_seconds=10, message="the condition never held"):
    """Poll predicate until it returns something true (returned), failing with message (or what message() says
    then) after timeout_seconds."""
    deadline, pause = time.monotonic() + timeout_seconds, 0.001
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message() if callable(message) else message} (waited {timeout_seconds} s)")
        time.sleep(pause)
        pause = min(pause * 2, 0.02)
    return value


class InThread:
    """Runs function(*args, **kwargs) in a thread of its own. What it returns or raises comes back to the test's
    own thread, where a failed assertion fails the test (pytest.ini also fails a test on an exception a thread of
    its own let escape)."""

    def __init__(self, function, *args, **kwargs):
        self._value = self._error = None
        self.thread = threading.Thread(target=self._run, args=(function, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, function, args, kwargs):
        try:
            self._value = function(*args, **kwargs)
        except BaseException as error:      # pytest.fail and pytest.raises' "DID NOT RAISE" are BaseExceptions
            self._error = error

    def join(self, timeout_seconds=10):
        self.thread.join(timeout_seconds)
        assert not self.thread.is_alive(), f"the thread still runs after {timeout_seconds} s: a hang"
        return self

    @property
    def done(self):
        return not self.thread.is_alive()

    def result(self, timeout_seconds=10):
        """What the function returned; what it raised is raised here."""
        self.join(timeout_seconds)
        if self._error is not None:
            raise self._error
        return self._value

    def error(self, timeout_seconds=10):
        """What the function raised (None if it returned)."""
        return self.join(timeout_seconds)._error

    def outcome(self, timeout_seconds=10):
        """What it returned, or the type of what it raised."""
        error = self.error(timeout_seconds)
        return self._value if error is None else type(error)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def data_environ(**overrides):
    env = {"DATA_TOKENS": ",".join(f"{b}:{t}" for b, t in DATA_TOKENS.items()), "LOCK_TTL": "5",
           "DATA_JOURNAL": "", "LOG_LEVEL": "WARNING", "OPERATOR_TOKENS": f"ops:{OPERATOR_TOKEN}"}
    env.update(overrides)
    return env


def store_environ(store, request, **overrides):
    """data_environ for a data server on store (embedded, or etcd: the run's cluster, the test's prefix)."""
    if store == "etcd":
        # tests/conftest.py marks the tests that reach etcd by their fixtures: one that does so otherwise would
        # start etcd in `make test-fast`.
        assert request.node.get_closest_marker("needs_etcd"), f"{request.node.nodeid} reaches etcd unmarked"
        cluster = request.getfixturevalue("etcd_cluster")
        overrides = {"DATA_STORE": "etcd", "ETCD_ENDPOINTS": ",".join(cluster.endpoints),
                     "ETCD_PREFIX": request.getfixturevalue("etcd_prefix"), **overrides}
    return data_environ(**overrides)


def close_data_app(app):
    """Close the data app's store: its threads end, its files and connections are let go."""
    app.extensions["bank.store"].close()


def business_environ(business_id, data_urls, **overrides):
    env = {"BUSINESS_ID": business_id, "DATA_URLS": data_urls, "DATA_TOKEN": DATA_TOKENS[business_id],
           "CLIENT_TOKENS": f"tester:{CLIENT_TOKEN},other:{OTHER_CLIENT_TOKEN},mallory:{MALLORY_TOKEN}",
           "LOCK_WAIT": "5",
           "DATA_TIMEOUT": "5", "LOG_LEVEL": "WARNING", "OPERATOR_TOKENS": f"ops:{OPERATOR_TOKEN}"}
    env.update(overrides)
    return env


def metric_samples(text):
    """Prometheus text as {(sample name, sorted label pairs): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def metric_sum(samples, name, **labels):
    """The sum of name's samples whose labels include labels."""
    return sum(value for (sample, pairs), value in samples.items()
               if sample == name and set(labels.items()) <= set(pairs))


# ---- the data server's API, as its tests call it ----------------------------------------------------------

B1, B2 = bearer(DATA_TOKENS["b1"]), bearer(DATA_TOKENS["b2"])


def assert_error(response, status, code):
    """response is the JSON error {"error": code, "message": ...} with that status."""
    assert response.status_code == status, response.json
    assert response.is_json and response.json["error"] == code and response.json["message"]


def lock(client, headers, account="acc", business="b1", **body):
    return client.post(f"/getLock/{business}/{account}", headers=headers, json=body)


def set_amount(client, account="acc", amount="100.00", operations=()):
    """Lock account as b1, write amount with operations recorded, unlock; return the lock's token."""
    token = lock(client, B1, account).json["token"]
    response = client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": account, "amount": amount, "token": token}],
        "operations": list(operations), "unlock": True})
    assert response.status_code == 200, response.json
    return token


def amount_of(client, account, headers=B1, business="b1"):
    return client.get(f"/getAmount/{business}/{account}", headers=headers).json.get("amount")

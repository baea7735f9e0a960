"""Test helpers used by more than one test module."""

DATA_TOKENS = {"b1": "test-data-token-b1", "b2": "test-data-token-b2", "b3": "test-data-token-b3"}
CLIENT_TOKEN = "test-client-token"


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def data_environ(**overrides):
    env = {"DATA_TOKENS": ",".join(f"{b}:{t}" for b, t in DATA_TOKENS.items()), "LOCK_TTL": "5",
           "DATA_JOURNAL": "", "LOG_LEVEL": "WARNING"}
    env.update(overrides)
    return env


def business_environ(business_id, data_url, **overrides):
    env = {"BUSINESS_ID": business_id, "DATA_URL": data_url, "DATA_TOKEN": DATA_TOKENS[business_id],
           "CLIENT_TOKENS": f"tester:{CLIENT_TOKEN},other:other-client-token", "LOCK_WAIT": "5",
           "DATA_TIMEOUT": "5", "LOG_LEVEL": "WARNING"}
    env.update(overrides)
    return env

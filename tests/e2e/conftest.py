import pytest

from tests.e2e.processes import Server, free_port
from tests.helpers import DATA_TOKENS


@pytest.fixture
def servers():
    """Makes servers and stops every one of them after the test, passed or failed."""
    started = []

    def make(name, config, env, log_dir, port=None):
        server = Server(name, config, port or free_port(), env, log_dir)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def data_server_env(journal, **overrides):
    env = {"DATA_TOKENS": ",".join(f"{b}:{t}" for b, t in DATA_TOKENS.items()), "DATA_JOURNAL": str(journal),
           "DATA_FSYNC": "always", "LOCK_TTL": "5", "DATA_THREADS": "16", "LOG_LEVEL": "WARNING"}
    env.update(overrides)
    return env

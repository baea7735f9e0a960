import pytest

from data.data_server import create_app as create_data_app
from shared.settings import load_data_settings
from tests.helpers import DATA_TOKENS, FakeClock, bearer, data_environ


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def data_app(clock):
    return create_data_app(load_data_settings(data_environ()), clock=clock)


@pytest.fixture
def data_client(data_app):
    return data_app.test_client()


@pytest.fixture
def b1():
    return bearer(DATA_TOKENS["b1"])


@pytest.fixture
def b2():
    return bearer(DATA_TOKENS["b2"])

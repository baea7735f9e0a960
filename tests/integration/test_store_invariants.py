"""The stores' assertions fire when the invariant they guard is broken on purpose, on both stores."""
import time

import pytest

from data.etcd.known_balances import KnownBalance
from data.factory import create_store
from data.store import Write
from shared.settings import load_data_settings
from tests.helpers import store_environ


@pytest.fixture
def bank(store, request):
    made = create_store(load_data_settings(store_environ(store, request)))
    yield made
    made.close()


def test_a_commit_that_would_leave_a_negative_balance_trips_an_assertion_and_applies_nothing(bank):
    token = bank.lock("b1", "a").token
    bank.commit("b1", {"a": Write(100, token)})
    with pytest.raises(AssertionError, match="negative balance"):
        bank.commit("b1", {"a": Write(-1, token)})
    assert bank.read("b1", "a", token).cents == 100
    assert [entry["balance"] for entry in bank.history("a").entries] == [100]


def test_an_etcd_token_below_one_this_process_saw_trips_an_assertion(etcd_cluster, request):
    bank = create_store(load_data_settings(store_environ("etcd", request)))
    try:
        # As if etcd's revisions had gone back (a cluster restored from an older backup): fencing would not fence.
        bank._known.remember({"a": KnownBalance(10 ** 15, None, time.monotonic() + 60)})
        with pytest.raises(AssertionError, match="not above those seen"):
            bank.lock("b1", "a")
    finally:
        bank.close()

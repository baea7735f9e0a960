"""Waiting for a held account on the data server: granted in arrival order, bounded in time and in number."""
import threading
import time

import pytest

from data.data_server import create_app as create_data_app
from shared.settings import load_data_settings
from tests.helpers import DATA_TOKENS, bearer, data_environ

B1, B2 = bearer(DATA_TOKENS["b1"]), bearer(DATA_TOKENS["b2"])


def real_clock_app(**overrides):
    return create_data_app(load_data_settings(data_environ(**overrides)))


def wait_until_waiting(app, count):
    deadline = time.monotonic() + 10
    while app.test_client().get("/health").json["waiting"] != count:
        assert time.monotonic() < deadline, f"{count} requests never queued"
        time.sleep(0.002)


def in_thread(function):
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=function()))
    thread.start()
    box["thread"] = thread
    return box


def test_a_waiting_lock_request_gets_the_lease_when_the_holder_releases_and_sees_its_write():
    app = real_clock_app()
    client = app.test_client()
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    waiter = in_thread(lambda: app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 5000}))
    wait_until_waiting(app, 1)
    client.post("/setAmount/b1/acc", headers=B1, json={"amount": "5.00", "token": token, "unlock": True})
    waiter["thread"].join(10)
    granted = waiter["result"]
    assert granted.status_code == 200 and granted.json["amount"] == "5.00" and granted.json["token"] > token


def test_waiting_requests_are_served_in_arrival_order():
    app = real_clock_app()
    client = app.test_client()
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    order = []

    def take_and_release(name):
        waiting_client = app.test_client()
        granted = waiting_client.post("/getLock/b2/acc", headers=B2, json={"wait_ms": 5000}).json
        order.append(name)
        waiting_client.post("/unLock/b2/acc", headers=B2, json={"token": granted["token"]})

    waiters = []
    for position, name in enumerate(["first", "second", "third"], start=1):
        waiters.append(in_thread(lambda name=name: take_and_release(name)))
        wait_until_waiting(app, position)
    client.post("/unLock/b1/acc", headers=B1, json={"token": token})
    for waiter in waiters:
        waiter["thread"].join(10)
    assert order == ["first", "second", "third"]


def test_a_newcomer_does_not_jump_the_queue():
    app = real_clock_app()
    client = app.test_client()
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    waiter = in_thread(lambda: app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 5000}))
    wait_until_waiting(app, 1)
    # Released and asked again at once, whether or not the waiter has run yet: the waiter is first either way.
    client.post("/unLock/b1/acc", headers=B1, json={"token": token})
    waiter["thread"].join(10)
    assert waiter["result"].status_code == 200
    assert client.post("/getLock/b1/acc", headers=B1).status_code == 423


def test_a_wait_that_runs_out_is_423():
    app = real_clock_app()
    app.test_client().post("/getLock/b1/acc", headers=B1)
    response = app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 50})
    assert response.status_code == 423 and response.json["holder"] == "b1"
    assert app.test_client().get("/health").json["waiting"] == 0


def test_past_the_waiter_limit_a_request_is_refused_at_once():
    app = real_clock_app(DATA_LOCK_WAITERS="1")
    app.test_client().post("/getLock/b1/acc", headers=B1)
    waiter = in_thread(lambda: app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 300}))
    wait_until_waiting(app, 1)
    refused = app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 5000})
    assert refused.status_code == 423 and app.test_client().get("/health").json["waiting"] == 1
    waiter["thread"].join(10)


def test_a_read_waits_its_turn_and_sees_the_holders_write():
    app = real_clock_app()
    client = app.test_client()
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    reader = in_thread(lambda: app.test_client().get("/getAmount/b2/acc?wait_ms=5000", headers=B2))
    wait_until_waiting(app, 1)
    client.post("/setAmount/b1/acc", headers=B1, json={"amount": "7.00", "token": token, "unlock": True})
    reader["thread"].join(10)
    assert reader["result"].json == {"account": "acc", "amount": "7.00"}


def test_an_expiring_lease_wakes_its_waiters():
    app = real_clock_app(LOCK_TTL="0.2")
    app.test_client().post("/getLock/b1/acc", headers=B1)
    response = app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 5000})
    assert response.status_code == 200


@pytest.mark.parametrize("wait", [-1, 10_001, "5", 1.5, True])
def test_a_malformed_wait_is_400(wait):
    response = real_clock_app().test_client().post("/getLock/b1/acc", headers=B1, json={"wait_ms": wait})
    assert response.status_code == 400 and response.json["error"] == "invalid_wait"

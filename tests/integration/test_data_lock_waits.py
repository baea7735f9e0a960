"""Waiting for a held account on the data server: granted in arrival order, bounded in time and in number."""
import time

import pytest

from shared.money import format_cents, parse_cents
from shared.settings import load_data_settings
from tests.helpers import B1, B2, InThread, data_environ, wait_until


def wait_until_waiting(app, count):
    wait_until(lambda: app.test_client().get("/health").json["waiting"] == count, 10, f"{count} requests never queued")


def test_a_waiting_lock_request_gets_the_lease_when_the_holder_releases_and_sees_its_write(real_clock_app):
    app = real_clock_app()
    client = app.test_client()
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    waiter = InThread(lambda: app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 5000}))
    wait_until_waiting(app, 1)
    client.post("/setAmount/b1/acc", headers=B1, json={"amount": "5.00", "token": token, "unlock": True})
    granted = waiter.result()
    assert granted.status_code == 200 and granted.json["amount"] == "5.00" and granted.json["token"] > token


def test_waiting_requests_are_served_in_arrival_order(real_clock_app):
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
        waiters.append(InThread(take_and_release, name))
        wait_until_waiting(app, position)
    client.post("/unLock/b1/acc", headers=B1, json={"token": token})
    for waiter in waiters:
        waiter.result()
    assert order == ["first", "second", "third"]


def test_a_newcomer_does_not_jump_the_queue(real_clock_app):
    app = real_clock_app()
    client = app.test_client()
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    waiter = InThread(lambda: app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 5000}))
    wait_until_waiting(app, 1)
    # Released and asked again at once, whether or not the waiter has run yet: the waiter is first either way.
    client.post("/unLock/b1/acc", headers=B1, json={"token": token})
    newcomer = client.post("/getLock/b1/acc", headers=B1)
    assert waiter.result().status_code == 200
    assert newcomer.status_code == 423


def test_a_wait_that_runs_out_is_423(real_clock_app):
    app = real_clock_app()
    app.test_client().post("/getLock/b1/acc", headers=B1)
    response = app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 50})
    assert response.status_code == 423 and response.json["holder"] == "b1"
    assert app.test_client().get("/health").json["waiting"] == 0


def test_past_the_waiter_limit_a_request_is_refused_at_once(real_clock_app):
    app = real_clock_app(DATA_LOCK_WAITERS="1")
    app.test_client().post("/getLock/b1/acc", headers=B1)
    waiter = InThread(lambda: app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 300}))
    wait_until_waiting(app, 1)
    refused = app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 5000})
    assert refused.status_code == 423 and app.test_client().get("/health").json["waiting"] == 1
    assert waiter.result().status_code == 423, "the lease's holder never gave it back: the waiter's wait runs out"


def test_a_read_waits_its_turn_and_sees_the_holders_write(real_clock_app):
    app = real_clock_app()
    client = app.test_client()
    token = client.post("/getLock/b1/acc", headers=B1).json["token"]
    reader = InThread(lambda: app.test_client().get("/getAmount/b2/acc?wait_ms=5000", headers=B2))
    wait_until_waiting(app, 1)
    client.post("/setAmount/b1/acc", headers=B1, json={"amount": "7.00", "token": token, "unlock": True})
    assert reader.result().json == {"account": "acc", "amount": "7.00", "owner": None,
                                      "holds": []}


@pytest.mark.embedded_only("etcd's shortest lease is longer than this test's 0.2 s")
def test_an_expiring_lease_wakes_its_waiters(real_clock_app):
    app = real_clock_app(LOCK_TTL="0.2")
    app.test_client().post("/getLock/b1/acc", headers=B1)
    started = time.monotonic()
    response = app.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 5000})
    # Woken by the expiry itself (0.2 s), not by the end of its 5 s wait, after which it would be granted too.
    assert response.status_code == 200 and time.monotonic() - started < 2


@pytest.mark.parametrize("wait", [-1, 10_001, "5", 1.5, True])
def test_a_malformed_wait_is_400(real_clock_app, wait):
    response = real_clock_app().test_client().post("/getLock/b1/acc", headers=B1, json={"wait_ms": wait})
    assert response.status_code == 400 and response.json["error"] == "invalid_wait"


def lock_all(client, headers, business, accounts, wait_ms=0):
    return client.post(f"/getLocks/{business}", headers=headers, json={"accounts": accounts, "wait_ms": wait_ms})


def test_several_accounts_are_leased_at_once_in_sorted_order_or_none_is(real_clock_app):
    app = real_clock_app()
    client = app.test_client()
    held = client.post("/getLock/b1/b", headers=B1).json["token"]
    refused = lock_all(client, B2, "b2", ["c", "b", "a"])
    assert refused.status_code == 423 and refused.json["error"] == "locked" and refused.json["holder"] == "b1"
    assert app.test_client().get("/health").json["leases"] == 1, "a refused set leased some of its accounts"
    client.post("/unLock/b1/b", headers=B1, json={"token": held})
    granted = lock_all(client, B2, "b2", ["c", "b", "a"])
    assert granted.status_code == 200
    locks = granted.json["locks"]
    assert [lock["account"] for lock in locks] == ["a", "b", "c"] and all(lock["amount"] is None for lock in locks)
    assert min(lock["token"] for lock in locks) > held
    commit = client.post("/commit/b2", headers=B2, json={"unlock": True, "writes": [
        {"account": lock["account"], "amount": "1.00", "token": lock["token"]} for lock in locks]})
    assert commit.status_code == 200


def test_a_set_waits_for_its_turn_holding_nothing_then_gets_every_account(real_clock_app):
    app = real_clock_app()
    client = app.test_client()
    token = client.post("/getLock/b1/y", headers=B1).json["token"]
    waiter = InThread(lock_all, app.test_client(), B2, "b2", ["x", "y"], wait_ms=5000)
    wait_until_waiting(app, 1)
    assert client.get("/health").json["leases"] == 1
    client.post("/setAmount/b1/y", headers=B1, json={"amount": "7.00", "token": token, "unlock": True})
    granted = waiter.result()
    assert granted.status_code == 200
    assert [(lock["account"], lock["amount"]) for lock in granted.json["locks"]] == [("x", None), ("y", "7.00")]


def test_a_set_that_waits_past_its_time_leaves_every_line_it_joined(real_clock_app):
    app = real_clock_app()
    client = app.test_client()
    client.post("/getLock/b1/y", headers=B1)
    refused = lock_all(app.test_client(), B2, "b2", ["x", "y"], wait_ms=50)
    assert refused.status_code == 423 and client.get("/health").json["waiting"] == 0
    assert client.post("/getLock/b1/x", headers=B1).status_code == 200


def test_overlapping_sets_from_many_threads_never_deadlock_and_every_increment_lands(real_clock_app):
    app = real_clock_app()
    accounts, rounds, sets = ["a", "b", "c", "d"], 15, [["a", "b"], ["b", "c"], ["c", "d"], ["d", "a"],
                                                          ["a", "c"], ["a", "b", "c", "d"], ["d", "b"], ["c", "a", "d"]]
    failures = []

    def worker(chosen):
        client = app.test_client()
        for _ in range(rounds):
            granted = lock_all(client, B1, "b1", chosen, wait_ms=10_000)
            if granted.status_code != 200:
                failures.append(granted.json)
                return
            writes = [{"account": lock["account"], "token": lock["token"],
                       "amount": format_cents(parse_cents(lock["amount"] or "0") + 100)}
                      for lock in granted.json["locks"]]
            client.post("/commit/b1", headers=B1, json={"writes": writes, "unlock": True})

    threads = [InThread(worker, chosen) for chosen in sets]
    for thread in threads:
        thread.result(60)
    assert failures == []
    client = app.test_client()
    expected = {account: sum(rounds for chosen in sets if account in chosen) for account in accounts}
    assert {a: client.get(f"/getAmount/b1/{a}", headers=B1).json["amount"] for a in accounts} == {
        a: f"{n}.00" for a, n in expected.items()}


@pytest.mark.parametrize("accounts", [[], ["a", "a"], ["a", "no/slash"], "a", [f"a{i}" for i in range(101)], [1]])
def test_a_malformed_account_set_is_400_and_leases_nothing(real_clock_app, accounts):
    app = real_clock_app()
    response = app.test_client().post("/getLocks/b1", headers=B1, json={"accounts": accounts})
    assert response.status_code == 400 and response.json["error"] == "invalid_accounts"
    assert app.test_client().get("/health").json["leases"] == 0


def test_a_release_wakes_the_request_waiting_for_that_account_without_any_timeout_passing(clock, make_data_app):
    # Time stands still and leases last a minute: only the release's wake-up can let the waiting request through.
    app = make_data_app(load_data_settings(data_environ(LOCK_TTL="60")), clock=clock)
    client = app.test_client()
    x = client.post("/getLock/b1/x", headers=B1).json["token"]
    y = client.post("/getLock/b1/y", headers=B1).json["token"]
    waiter = InThread(lock_all, app.test_client(), B2, "b2", ["x", "y"], wait_ms=10_000)
    wait_until_waiting(app, 1)
    client.post("/unLock/b1/y", headers=B1, json={"token": y})
    client.post("/unLock/b1/x", headers=B1, json={"token": x})
    assert waiter.result(5).status_code == 200

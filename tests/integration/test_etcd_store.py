"""What only the etcd store can show: several data servers serving one bank, leases expiring in real time on the
cluster, and a clear 503 when no member answers."""
import socket
import threading
import time

import pytest

from data.etcd_gateway import EtcdGateway
from data.etcd_store import EtcdStore
from data.store import StoreUnavailable
from harness.processes import free_port
from data.data_server import create_app as create_data_app
from shared.settings import load_data_settings
from tests.helpers import B1, B2, OPERATOR_TOKEN, bearer, data_environ, store_environ


def etcd_app(request, **overrides):
    return create_data_app(load_data_settings(store_environ("etcd", request, **overrides)))


def test_two_data_servers_on_one_cluster_serve_one_bank(request):
    first, second = etcd_app(request).test_client(), etcd_app(request).test_client()
    token = first.post("/getLock/b1/acc", headers=B1).json["token"]
    assert second.post("/getLock/b2/acc", headers=B2).status_code == 423
    written = second.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "acc", "amount": "8.00", "token": token}],
        "operations": [{"id": "op-1", "request": "r", "result": 1}], "unlock": True})
    assert written.status_code == 200 and written.json["replayed"] is False
    again = first.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "acc", "amount": "8.00", "token": token}],
        "operations": [{"id": "op-1", "request": "r", "result": 1}], "unlock": True})
    assert again.json["replayed"] is True
    assert first.get("/getAmount/b2/acc", headers=B2).json["amount"] == "8.00"
    assert second.post("/getLock/b2/acc", headers=B2).json["token"] > token


def test_a_lease_expires_on_the_cluster_and_its_late_write_is_fenced_off(request):
    client = etcd_app(request, LOCK_TTL="2").test_client()
    stale = client.post("/getLock/b1/acc", headers=B1).json["token"]
    deadline = time.monotonic() + 10
    while (taken := client.post("/getLock/b2/acc", headers=B2)).status_code == 423:
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.1)
    late = client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "acc", "amount": "9.00", "token": stale}], "unlock": True})
    assert late.status_code == 409 and late.json["error"] == "not_lock_holder"
    assert taken.json["token"] > stale and taken.json["amount"] is None


def test_no_member_answering_is_a_clear_503():
    client = create_data_app(load_data_settings(data_environ(
        DATA_STORE="etcd", ETCD_ENDPOINTS=f"http://127.0.0.1:{free_port()}", ETCD_TIMEOUT="0.5"))).test_client()
    response = client.post("/getLock/b1/acc", headers=B1)
    assert response.status_code == 503 and response.json["error"] == "store_unavailable"
    assert response.headers["Retry-After"] == "1"
    for path in ("/health", "/dashboard/state"):
        answer = client.get(path, headers=bearer(OPERATOR_TOKEN))
        assert answer.status_code == 503 and answer.json["error"] == "store_unavailable", path
    assert client.get("/metrics", headers=bearer(OPERATOR_TOKEN)).status_code == 200


def test_a_member_behind_a_silent_drop_costs_one_timeout_not_one_per_call(request):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    # With its backlog full and never accepted, further connections hang like SYNs silently dropped by a partition.
    fillers = [socket.create_connection(silent.getsockname())]
    try:
        cluster = request.getfixturevalue("etcd_cluster")
        endpoints = ",".join([f"http://127.0.0.1:{silent.getsockname()[1]}", *cluster.endpoints])
        client = etcd_app(request, ETCD_ENDPOINTS=endpoints, ETCD_TIMEOUT="0.5").test_client()
        first = client.post("/getLock/b1/acc", headers=B1)
        assert first.status_code in (200, 503)
        for account in ("a", "b", "c", "d"):
            started = time.monotonic()
            assert client.post(f"/getLock/b1/{account}", headers=B1).status_code == 200
            assert time.monotonic() - started < 0.4
    finally:
        for open_socket in (silent, *fillers):
            open_socket.close()


def test_a_waiter_cut_off_from_etcd_holds_the_line_back_for_about_its_wait_not_a_lease(request):
    holder = etcd_app(request)
    settings = load_data_settings(store_environ("etcd", request))
    waiter_store = EtcdStore(settings)
    token = holder.test_client().post("/getLock/b1/acc", headers=B1).json["token"]
    waiting = threading.Thread(target=lambda: pytest.raises(Exception, waiter_store.lock, "b2", "acc", wait=0.5))
    waiting.start()
    deadline = time.monotonic() + 5
    while holder.test_client().get("/health").json["waiting"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    # Its etcd gone, the waiter can neither leave the line nor take its place out.
    waiter_store._etcd = EtcdGateway([f"http://127.0.0.1:{free_port()}"], 0.5)
    waiting.join(5)
    holder.test_client().post("/unLock/b1/acc", headers=B1, json={"token": token})
    released = time.monotonic()
    granted = holder.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 10_000})
    assert granted.status_code == 200
    # Its place lived its wait (0.5 s) and a margin, where it used to live LOCK_TTL (5 s) more.
    assert time.monotonic() - released < 4


def test_no_lock_is_taken_once_its_caller_would_have_given_up(request, monkeypatch):
    store = EtcdStore(load_data_settings(store_environ("etcd", request)))
    granting = store._etcd.grant

    def slow_grant(seconds, timeout=None):
        time.sleep(0.7)         # etcd slow, as right after an election: the caller's patience (0.5 s) runs out
        return granting(seconds)

    monkeypatch.setattr(store._etcd, "grant", slow_grant)
    with pytest.raises(StoreUnavailable):
        store.lock_all("b1", ["acc"], wait=0)
    # Nothing was taken: the account is free at once, not after a lease nobody knows of.
    assert store.counts().leases == 0
    monkeypatch.setattr(store._etcd, "grant", granting)
    assert store.lock_all("b2", ["acc"]).grants[0].account == "acc"


def test_a_lock_whose_answer_was_lost_is_given_back_by_revoking_its_lease(request, monkeypatch):
    store = EtcdStore(load_data_settings(store_environ("etcd", request)))
    sent = store._etcd.txn

    def applied_but_unanswered(*args, **kwargs):
        answer = sent(*args, **kwargs)
        if kwargs.get("timeout") is not None:       # the transaction that takes the locks
            raise StoreUnavailable("etcd: the answer was lost")
        return answer

    monkeypatch.setattr(store._etcd, "txn", applied_but_unanswered)
    with pytest.raises(StoreUnavailable):
        store.lock_all("b1", ["acc"])
    monkeypatch.setattr(store._etcd, "txn", sent)
    # The lock was taken, but no one knows its token: its lease is revoked, long before LOCK_TTL (5 s) is up.
    deadline = time.monotonic() + 2
    while store.counts().leases:
        assert time.monotonic() < deadline, "the lost lock was not given back"
        time.sleep(0.05)
    assert store.lock_all("b2", ["acc"]).grants[0].account == "acc"

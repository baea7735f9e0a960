"""What only the etcd store can show: several data servers serving one bank, leases expiring in real time on the
cluster, and a clear 503 when no member answers."""
import concurrent.futures
import json
import socket
import subprocess
import threading
import time

import pytest

from data.etcd.gateway import EtcdGateway
from data.etcd.gateway import put as etcd_put
from data.etcd.lines import POLL_MOST_SECONDS
from data.etcd.store import EtcdStore
from data.store import LockHeld, StoreFull, StoreUnavailable, Write
from harness.etcd_cluster import Placement
from harness.processes import free_port
from shared.settings import load_data_settings
from tests.helpers import B1, B2, OPERATOR_TOKEN, InThread, bearer, data_environ, store_environ, wait_until


@pytest.fixture
def etcd_app(etcd_cluster, make_data_app, request):
    """Makes data apps on the run's cluster, under the test's prefix (settings as data_environ's overrides)."""
    def make(**overrides):
        return make_data_app(load_data_settings(store_environ("etcd", request, **overrides)))
    return make


@pytest.fixture
def etcd_store(etcd_cluster, request):
    """Makes etcd stores on the run's cluster, under the test's prefix; closes them after the test."""
    made = []

    def make(**overrides):
        made.append(EtcdStore(load_data_settings(store_environ("etcd", request, **overrides))))
        return made[-1]

    yield make
    for store in made:
        store.close()


def test_two_data_servers_on_one_cluster_serve_one_bank(etcd_app):
    first, second = etcd_app().test_client(), etcd_app().test_client()
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


def test_a_lease_expires_on_the_cluster_and_its_late_write_is_fenced_off(etcd_app):
    client = etcd_app(LOCK_TTL="2").test_client()
    stale = client.post("/getLock/b1/acc", headers=B1).json["token"]
    taken = wait_until(lambda: (answer := client.post("/getLock/b2/acc", headers=B2)).status_code != 423 and answer,
                       10, "the lease never expired")
    late = client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "acc", "amount": "9.00", "token": stale}], "unlock": True})
    assert late.status_code == 409 and late.json["error"] == "not_lock_holder"
    assert taken.json["token"] > stale and taken.json["amount"] is None


def test_no_member_answering_is_a_clear_503(make_data_app):
    client = make_data_app(load_data_settings(data_environ(
        DATA_STORE="etcd", ETCD_ENDPOINTS=f"http://127.0.0.1:{free_port()}", ETCD_TIMEOUT="0.5"))).test_client()
    response = client.post("/getLock/b1/acc", headers=B1)
    assert response.status_code == 503 and response.json["error"] == "store_unavailable"
    assert response.headers["Retry-After"] == "1"
    for path in ("/health", "/dashboard/state"):
        answer = client.get(path, headers=bearer(OPERATOR_TOKEN))
        assert answer.status_code == 503 and answer.json["error"] == "store_unavailable", path
    assert client.get("/metrics", headers=bearer(OPERATOR_TOKEN)).status_code == 200


def test_a_member_behind_a_silent_drop_costs_one_timeout_not_one_per_call(etcd_cluster, etcd_app):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    # With its backlog full and never accepted, further connections hang like SYNs silently dropped by a partition.
    fillers = [socket.create_connection(silent.getsockname())]
    try:
        endpoints = ",".join([f"http://127.0.0.1:{silent.getsockname()[1]}", *etcd_cluster.endpoints])
        client = etcd_app(ETCD_ENDPOINTS=endpoints, ETCD_TIMEOUT="0.5").test_client()
        first = client.post("/getLock/b1/acc", headers=B1)
        assert first.status_code in (200, 503)
        for account in ("a", "b", "c", "d"):
            started = time.monotonic()
            assert client.post(f"/getLock/b1/{account}", headers=B1).status_code == 200
            assert time.monotonic() - started < 0.4
    finally:
        for open_socket in (silent, *fillers):
            open_socket.close()


def test_a_waiter_cut_off_from_etcd_holds_the_line_back_for_about_its_wait_not_a_lease(etcd_app, etcd_store):
    holder = etcd_app()
    waiter_store = etcd_store()
    token = holder.test_client().post("/getLock/b1/acc", headers=B1).json["token"]
    waiting = InThread(waiter_store.lock, "b2", "acc", wait=0.5)
    wait_until(lambda: holder.test_client().get("/health").json["waiting"] == 1, 5, "the waiter never queued")
    # Its etcd gone, the waiter can neither leave the line nor take its place out.
    waiter_store._etcd.call = EtcdGateway([f"http://127.0.0.1:{free_port()}"], 0.5).call
    assert waiting.error() is not None, "the waiter was granted the lock its holder kept"
    holder.test_client().post("/unLock/b1/acc", headers=B1, json={"token": token})
    released = time.monotonic()
    granted = holder.test_client().post("/getLock/b2/acc", headers=B2, json={"wait_ms": 10_000})
    assert granted.status_code == 200
    # Its place lived its wait (0.5 s) and a margin, where it used to live LOCK_TTL (5 s) more.
    assert time.monotonic() - released < 4


def test_no_lock_is_taken_once_its_caller_would_have_given_up(etcd_store, monkeypatch):
    store = etcd_store()
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


def test_a_lock_whose_answer_was_lost_is_given_back_by_revoking_its_lease(etcd_store, monkeypatch):
    store = etcd_store()
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
    wait_until(lambda: store.counts().leases == 0, 2, "the lost lock was not given back")
    assert store.lock_all("b2", ["acc"]).grants[0].account == "acc"


def test_locks_sharing_a_lease_each_live_their_ttl_and_a_renewal_keeps_only_its_own(etcd_store):
    store = etcd_store(LOCK_TTL="2")
    renewed = store.lock("b1", "renewed")
    time.sleep(0.8)                             # the second lock shares the first one's lease, 0.8 s older
    left = store.lock("b1", "left")
    taken = time.monotonic()
    while time.monotonic() < taken + 3.5:
        store.lock("b1", "renewed", token=renewed.token)
        if time.monotonic() < taken + 1.8:      # a lock lives its TTL (2 s) from its own grant at least
            with pytest.raises(LockHeld):
                store.lock("b2", "left")
        time.sleep(0.3)                         # the holder's renewals on the real clock, as a business server's
    # The renewals moved "renewed" to newer leases; "left", never renewed, expired with the lease it shared.
    assert store.lock("b2", "left").token > left.token
    assert store.commit("b1", {"renewed": Write(100, renewed.token)}, unlock=True).replayed is False


def test_a_waiter_behind_a_lock_of_its_own_data_server_is_woken_by_the_release_and_polls_etcd_slowly(etcd_store):
    store = etcd_store()
    calls, sent = [], store._etcd.txn
    store._etcd.txn = lambda *args, **kwargs: calls.append(args) or sent(*args, **kwargs)
    holder = store.lock("b1", "acc")
    waiter = InThread(store.lock, "b2", "acc", wait=5)
    wait_until(lambda: store._local.waiting(["acc"]) == 1, 5, "the waiter never queued")
    asked, started = len(calls), time.monotonic()
    time.sleep(0.5)                             # the half second of waiting whose questions to etcd are counted
    # It looks again (the lock may be released through another data server), at most once a POLL_MOST_SECONDS.
    assert len(calls) - asked <= (time.monotonic() - started) / POLL_MOST_SECONDS + 1
    released = time.monotonic()
    store.unlock("b1", "acc", holder.token)
    granted = waiter.result()
    assert time.monotonic() - released < 0.2 and granted.token > holder.token


def test_a_lock_released_through_another_data_server_is_free_at_once_on_the_one_that_granted_it(etcd_store):
    first, second = etcd_store(), etcd_store()
    holder = first.lock("b1", "acc")
    second.commit("b1", {"acc": Write(100, holder.token)}, unlock=True)
    started = time.monotonic()
    again = first.lock("b1", "acc", wait=5)
    # The first still believed it held: asked at once all the same, not after the wait or the lease.
    assert time.monotonic() - started < 2.5 and again.token > holder.token
    waiter = InThread(first.lock, "b2", "acc", wait=5)
    wait_until(lambda: first._local.waiting(["acc"]) == 1, 5, "the waiter never queued")
    released = time.monotonic()
    second.unlock("b1", "acc", again.token)
    assert waiter.result().token > again.token and time.monotonic() - released < 2.5


def test_waiters_on_two_data_servers_are_served_in_arrival_order(etcd_store):
    first, second = etcd_store(), etcd_store()
    holder = first.lock("b1", "acc")
    order = []

    def wait_through(store, name):
        granted = store.lock("b2", "acc", wait=5)
        order.append(name)
        store.unlock("b2", "acc", granted.token)

    early = InThread(wait_through, second, "through the other server")
    wait_until(lambda: first.counts().waiting == 1, 5, "the first waiter never queued")
    # Waiting at the holder's own server, this one is woken by the release first, and still goes second.
    late = InThread(wait_through, first, "through the holder's server")
    wait_until(lambda: first.counts().waiting == 2, 5, "the second waiter never queued")
    first.unlock("b1", "acc", holder.token)
    early.result()
    late.result()
    assert order == ["through the other server", "through the holder's server"]


def test_at_etcds_quota_writes_are_refused_as_store_full_nothing_is_lost_and_room_brings_them_back(
        make_etcd_cluster, make_data_app):
    cluster = make_etcd_cluster({"m1": Placement()}, quota_bytes=2 * 2 ** 20)
    endpoint = cluster.endpoints[0]
    client = make_data_app(load_data_settings(data_environ(
        DATA_STORE="etcd", ETCD_ENDPOINTS=endpoint, ETCD_PREFIX="bank/"))).test_client()
    deposit = {"writes": [{"account": "acc", "amount": "100.00"}], "operations": [
        {"id": "op-1", "request": "r", "result": 1}], "unlock": True}
    deposit["writes"][0]["token"] = client.post("/getLock/b1/acc", headers=B1).json["token"]
    assert client.post("/commit/b1", headers=B1, json=deposit).status_code == 200
    held = client.post("/getLock/b1/acc", headers=B1).json["token"]
    # Something else fills etcd's database up to its quota.
    filler = EtcdGateway([endpoint], 5)
    with pytest.raises(StoreFull):
        for i in range(100):
            filler.txn(success=[etcd_put(f"filler/{i}", "x" * 100_000)])
    late = {"writes": [{"account": "acc", "amount": "250.00", "token": held}],
            "operations": [{"id": "op-2", "request": "r", "result": 2}], "unlock": True}
    for refused in (client.post("/commit/b1", headers=B1, json=late), client.post("/getLock/b1/other", headers=B1)):
        assert refused.status_code == 503 and refused.json["error"] == "store_full"
        assert refused.headers["Retry-After"] == "30"
    # Deletes are still taken: the lock is given back, and the balance is read as it was.
    assert client.post("/unLock/b1/acc", headers=B1, json={"token": held}).status_code == 200
    assert client.get("/getAmount/b2/acc", headers=B2).json["amount"] == "100.00"
    # What docs/data-tier.md tells an operator to do: delete, compact, defragment, disarm the alarm.
    etcdctl = ["etcdctl", "--endpoints", endpoint]
    subprocess.run([*etcdctl, "del", "--prefix", "filler/"], check=True, capture_output=True, timeout=30)
    status = json.loads(subprocess.run([*etcdctl, "endpoint", "status", "-w", "json"], check=True,
                                       capture_output=True, timeout=30).stdout)
    for command in (["compact", str(status[0]["Status"]["header"]["revision"])], ["defrag"], ["alarm", "disarm"]):
        subprocess.run([*etcdctl, *command], check=True, capture_output=True, timeout=30)
    late["writes"][0]["token"] = client.post("/getLock/b1/acc", headers=B1, json={"wait_ms": 5000}).json["token"]
    again = client.post("/commit/b1", headers=B1, json=late)
    # The refused commit recorded nothing: sent again, it is applied now, once.
    assert again.status_code == 200 and again.json["replayed"] is False
    assert client.get("/getAmount/b2/acc", headers=B2).json["amount"] == "250.00"


def test_concurrent_requests_share_etcd_transactions_but_two_on_one_account_never_do(etcd_store):
    store = etcd_store()
    calls, sent = [], store._etcd.txn
    store._etcd.txn = lambda *args, **kwargs: calls.append(args) or sent(*args, **kwargs)
    barrier = threading.Barrier(24)

    def lock(account):
        barrier.wait()
        try:
            return store.lock("b1", account).token
        except LockHeld:
            return None

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        distinct = list(pool.map(lock, [f"acc-{i}" for i in range(24)]))
    assert all(distinct) and len(calls) < 24
    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        same = list(pool.map(lock, ["one"] * 24))
    # Never together: etcd would refuse the transaction (a key written twice), or lease the account twice.
    assert len([token for token in same if token]) == 1 and store.counts().leases == 25


def test_history_is_numbered_on_whichever_data_server_took_the_lock_and_whichever_writes_under_it(etcd_app):
    first, second = etcd_app().test_client(), etcd_app().test_client()

    def commit(client, amount, entry_amount, balance, op_id, unlock):
        return client.post("/commit/b1", headers=B1, json={
            "writes": [{"account": "acc", "amount": amount, "token": token}], "unlock": unlock,
            "operations": [{"id": op_id, "request": "r", "result": 1}],
            "entries": [{"account": "acc", "kind": "deposit", "amount": entry_amount, "balance": balance,
                         "operation": op_id}]})

    # The first server took the lock and read the balance; the second writes under it, then the first again.
    token = first.post("/getLock/b1/acc", headers=B1).json["token"]
    assert commit(second, "5.00", "5.00", "5.00", "op-1", unlock=False).status_code == 200
    assert commit(first, "7.00", "2.00", "7.00", "op-2", unlock=False).status_code == 200
    assert commit(second, "8.00", "1.00", "8.00", "op-3", unlock=True).status_code == 200
    entries = first.get("/getHistory/b1/acc", headers=B1).json["entries"]
    assert [(e["seq"], e["balance"], e["operation"]) for e in entries] == [
        (3, "8.00", "op-3"), (2, "7.00", "op-2"), (1, "5.00", "op-1")]

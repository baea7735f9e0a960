"""What only the etcd store can show: several data servers serving one bank, leases expiring in real time on the
cluster, and a clear 503 when no member answers."""
import time

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

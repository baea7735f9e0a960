"""Operation records: a client key's lasts its whole retention and is never dropped early; a bare commit's lasts
long enough for that commit to be sent again."""
import pytest

from shared.settings import load_data_settings
from tests.helpers import B1, FakeClock, lock, store_environ


@pytest.fixture
def wall():
    return FakeClock()


@pytest.fixture
def wall_clock_app(store, request, wall, make_data_app):
    """Makes data apps on the test's store whose wall clock (for retention) the test moves."""
    def make(**overrides):
        return make_data_app(load_data_settings(store_environ(store, request, **overrides)), wall_clock=wall)
    return make


def commit(client, account, amount, token, op_id, keyed=True):
    return client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": account, "amount": amount, "token": token}],
        "operations": [{"id": op_id, "request": f"set {account} {amount}", "result": amount, "keyed": keyed}],
        "unlock": True})


def write(client, account, amount, op_id, keyed=True):
    response = commit(client, account, amount, lock(client, B1, account).json["token"], op_id, keyed)
    assert response.status_code == 200, response.json
    return response


def test_a_full_key_table_refuses_new_keyed_writes_and_keeps_every_live_key(wall_clock_app, wall):
    client = wall_clock_app(DATA_OPERATION_LIMIT="3", DATA_OPERATION_RETENTION="100").test_client()
    for i in range(3):
        write(client, "acc", f"{i}.00", f"key-{i}")
        wall.advance(10)
    token = lock(client, B1, "acc").json["token"]
    refused = commit(client, "acc", "9.00", token, "key-3")
    assert refused.status_code == 503 and refused.json["error"] == "idempotency_store_full"
    assert refused.headers["Retry-After"] == "70"       # when the oldest key's retention ends
    assert client.get(f"/getAmount/b1/acc?token={token}", headers=B1).json["amount"] == "2.00"
    recorded = lock(client, B1, "other", lookup=[f"key-{i}" for i in range(4)]).json["operations"]
    assert set(recorded) == {"key-0", "key-1", "key-2"}
    # Writes without a key have their own table and go on.
    assert commit(client, "acc", "4.00", token, "bare-1", keyed=False).status_code == 200
    wall.advance(71)
    write(client, "acc", "9.00", "key-3")
    recorded = lock(client, B1, "z", lookup=[f"key-{i}" for i in range(4)]).json["operations"]
    assert set(recorded) == {"key-1", "key-2", "key-3"}


def test_a_full_retry_table_refuses_writes_without_a_key_until_the_oldest_expires(wall_clock_app, wall):
    client = wall_clock_app(DATA_RETRY_RECORD_LIMIT="2", DATA_RETRY_RECORD_RETENTION="30").test_client()
    write(client, "acc", "1.00", "bare-1", keyed=False)
    write(client, "acc", "2.00", "bare-2", keyed=False)
    token = lock(client, B1, "acc").json["token"]
    refused = commit(client, "acc", "3.00", token, "bare-3", keyed=False)
    assert refused.status_code == 503 and refused.json["error"] == "idempotency_store_full"
    wall.advance(31)
    assert commit(client, "acc", "3.00", token, "bare-3", keyed=False).status_code == 200


def test_a_commit_retry_is_answered_as_applied_however_many_keyed_records_came_since(wall_clock_app, wall):
    client = wall_clock_app(DATA_OPERATION_LIMIT="3", DATA_RETRY_RECORD_RETENTION="60").test_client()
    token = lock(client, B1, "acc").json["token"]
    first = commit(client, "acc", "5.00", token, "bare-1", keyed=False)
    for i in range(3):
        write(client, "other", f"{i}.00", f"key-{i}")
    for i in range(50):
        write(client, "other", f"{i}.00", f"bare-x{i}", keyed=False)
    wall.advance(59)
    retry = commit(client, "acc", "5.00", token, "bare-1", keyed=False)
    assert retry.status_code == 200 and retry.json["replayed"] is True
    assert retry.json["results"] == first.json["results"]


def test_records_without_a_key_last_their_short_retention_and_keyed_ones_their_long_one(wall_clock_app, wall, tmp_path):
    overrides = {"DATA_JOURNAL": str(tmp_path / "bank.journal"), "DATA_OPERATION_RETENTION": "3600",
                 "DATA_RETRY_RECORD_RETENTION": "60"}
    app = wall_clock_app(**overrides)
    write(app.test_client(), "acc", "1.00", "bare", keyed=False)
    write(app.test_client(), "acc", "2.00", "keyed")
    app.extensions["bank.store"].close()
    client = wall_clock_app(**overrides).test_client()
    assert set(lock(client, B1, "x", lookup=["bare", "keyed"]).json["operations"]) == {"bare", "keyed"}
    wall.advance(61)
    assert set(lock(client, B1, "y", lookup=["bare", "keyed"]).json["operations"]) == {"keyed"}
    wall.advance(3600)
    assert lock(client, B1, "z", lookup=["bare", "keyed"]).json["operations"] == {}


@pytest.mark.parametrize("keyed", ["yes", 1, None])
def test_keyed_must_be_true_or_false(wall_clock_app, keyed):
    client = wall_clock_app().test_client()
    token = lock(client, B1, "acc").json["token"]
    response = client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "acc", "amount": "1.00", "token": token}],
        "operations": [{"id": "op", "request": "r", "result": 1, "keyed": keyed}]})
    assert response.status_code == 400 and response.json["error"] == "invalid_operations"

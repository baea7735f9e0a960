"""Durability: the journal replays every acknowledged write, drops a torn tail and refuses a corrupt middle."""
import logging

import pytest

from data.data_server import JournalCorrupt, create_app as create_data_app
from shared.settings import load_data_settings
from tests.helpers import DATA_TOKENS, FakeClock, bearer, data_environ

B1 = bearer(DATA_TOKENS["b1"])


def start(journal, **overrides):
    settings = load_data_settings(data_environ(DATA_JOURNAL=str(journal), **overrides))
    return create_data_app(settings)


def stop(app):
    app.extensions["bank.journal"].close()


def deposit(client, account, amount, operations=()):
    token = client.post(f"/getLock/b1/{account}", headers=B1).json["token"]
    response = client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": account, "amount": amount, "token": token}],
        "operations": list(operations), "unlock": True})
    assert response.status_code == 200
    return token


def amount_of(client, account):
    return client.get(f"/getAmount/b1/{account}", headers=B1).json.get("amount")


@pytest.mark.parametrize("fsync", ["always", "everysec", "no"])
def test_a_restart_replays_every_acknowledged_write(tmp_path, fsync):
    journal = tmp_path / "bank.journal"
    app = start(journal, DATA_FSYNC=fsync)
    client = app.test_client()
    for i in range(20):
        deposit(client, f"acc{i % 4}", f"{i}.50")
    last_token = deposit(client, "acc0", "7.25", [{"id": "op-x", "request": "r", "result": {"ok": 1}}])
    stop(app)

    client = start(journal, DATA_FSYNC=fsync).test_client()
    assert [amount_of(client, f"acc{i}") for i in range(4)] == ["7.25", "17.50", "18.50", "19.50"]
    granted = client.post("/getLock/b1/acc0", headers=B1, json={"lookup": ["op-x"]}).json
    assert granted["token"] > last_token
    assert granted["operations"] == {"op-x": {"request": "r", "result": {"ok": 1}}}


def test_a_lock_never_written_leaves_nothing_after_restart(tmp_path):
    journal = tmp_path / "bank.journal"
    app = start(journal)
    app.test_client().post("/getLock/b1/ghost", headers=B1)
    stop(app)
    assert start(journal).test_client().get("/getAmount/b1/ghost", headers=B1).status_code == 404


def test_a_torn_last_record_is_dropped_with_a_warning_and_writing_goes_on(tmp_path, caplog):
    journal = tmp_path / "bank.journal"
    app = start(journal)
    deposit(app.test_client(), "acc", "10.00")
    stop(app)
    with open(journal, "ab") as f:
        f.write(b'1234abcd {"t":"commit","w":{"acc":')

    with caplog.at_level(logging.WARNING, logger="bank.data"):
        app = start(journal)
    assert "torn" in caplog.text
    client = app.test_client()
    assert amount_of(client, "acc") == "10.00"
    deposit(client, "acc", "11.00")
    stop(app)
    assert amount_of(start(journal).test_client(), "acc") == "11.00"


def test_a_corrupt_record_in_the_middle_stops_start_up(tmp_path):
    journal = tmp_path / "bank.journal"
    app = start(journal)
    for amount in ("1.00", "2.00", "3.00"):
        deposit(app.test_client(), "acc", amount)
    stop(app)
    lines = journal.read_bytes().split(b"\n")
    lines[1] = lines[1].replace(b'"acc":100', b'"acc":900')
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalCorrupt, match="record 2"):
        start(journal)


def test_compaction_keeps_the_journal_proportional_to_accounts_not_history(tmp_path):
    journal = tmp_path / "bank.journal"
    app = start(journal, DATA_COMPACT_MIN_RECORDS="10")
    client = app.test_client()
    for i in range(200):
        deposit(client, f"acc{i % 3}", f"{i}.00", [{"id": f"op-{i}", "request": "r", "result": i}])
    stop(app)
    assert len(journal.read_bytes().splitlines()) < 30

    client = start(journal).test_client()
    assert [amount_of(client, f"acc{i}") for i in range(3)] == ["198.00", "199.00", "197.00"]
    recorded = client.post("/getLock/b1/acc0", headers=B1, json={"lookup": ["op-199", "op-0"]}).json["operations"]
    assert recorded == {"op-199": {"request": "r", "result": 199}, "op-0": {"request": "r", "result": 0}}


def test_fencing_tokens_keep_growing_across_many_restarts(tmp_path):
    journal, seen = tmp_path / "bank.journal", []
    for _ in range(3):
        app = start(journal)
        client = app.test_client()
        for _ in range(3):
            token = client.post("/getLock/b1/acc", headers=B1).json["token"]
            client.post("/unLock/b1/acc", headers=B1, json={"token": token})
            seen.append(token)
        stop(app)
    assert seen == sorted(set(seen))


def test_idempotency_records_are_forgotten_after_their_retention_also_across_a_restart(tmp_path):
    journal, wall = tmp_path / "bank.journal", FakeClock()
    settings = load_data_settings(data_environ(DATA_JOURNAL=str(journal), DATA_OPERATION_RETENTION="60"))
    app = create_data_app(settings, wall_clock=wall)
    client = app.test_client()
    deposit(client, "acc", "1.00", [{"id": "old", "request": "r", "result": 1}])
    wall.advance(30)
    deposit(client, "acc", "2.00", [{"id": "new", "request": "r", "result": 2}])
    wall.advance(31)
    granted = client.post("/getLock/b1/acc", headers=B1, json={"lookup": ["old", "new"]}).json
    assert set(granted["operations"]) == {"new"}
    client.post("/unLock/b1/acc", headers=B1, json={"token": granted["token"]})
    stop(app)
    wall.advance(30)
    client = create_data_app(settings, wall_clock=wall).test_client()
    assert client.post("/getLock/b1/acc", headers=B1, json={"lookup": ["old", "new"]}).json["operations"] == {}


def test_idempotency_records_are_capped_oldest_first(tmp_path):
    app = start(tmp_path / "bank.journal", DATA_OPERATION_LIMIT="3")
    client = app.test_client()
    for i in range(5):
        deposit(client, "acc", f"{i}.00", [{"id": f"op-{i}", "request": "r", "result": i}])
    recorded = client.post("/getLock/b1/acc", headers=B1, json={"lookup": [f"op-{i}" for i in range(5)]}).json
    assert set(recorded["operations"]) == {"op-2", "op-3", "op-4"}

"""The data server's history over HTTP: entries recorded with their commit, read without a lock, refused when
they do not add up; and on the embedded store, kept through restarts, lost history files and compactions."""
import sqlite3
import threading

import pytest

from data.embedded.history_file import HistoryFile
from shared.settings import load_data_settings
from tests.helpers import B1, B2, amount_of, assert_error, data_environ, lock, set_amount, wait_until


def entry(account, kind, amount, balance, operation, counterparty=None, key=None):
    return {"account": account, "kind": kind, "amount": amount, "balance": balance, "counterparty": counterparty,
            "operation": operation, "key": key}


def commit(client, writes, entries, op_id):
    """Lock the accounts of writes ({account: amount}) as b1 and commit them with entries and op_id's record."""
    tokens = {account: lock(client, B1, account).json["token"] for account in writes}
    return client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": a, "amount": amount, "token": tokens[a]} for a, amount in writes.items()],
        "operations": [{"id": op_id, "request": f"request {op_id}", "result": {}}], "unlock": True,
        "entries": entries})


def history(client, account, query=""):
    return client.get(f"/getHistory/b1/{account}{query}", headers=B1)


def test_a_commit_records_its_entries_and_any_business_reads_them_newest_first(data_client):
    assert commit(data_client, {"a": "100.00"}, [entry("a", "deposit", "100.00", "100.00", "op-1", key="k-1")],
                  "op-1").status_code == 200
    assert commit(data_client, {"a": "70.00", "b": "30.00"},
                  [entry("a", "transfer_out", "30.00", "70.00", "op-2", "b"),
                   entry("b", "transfer_in", "30.00", "30.00", "op-2", "a")], "op-2").status_code == 200
    page = data_client.get("/getHistory/b2/a", headers=B2).json
    assert page["account"] == "a" and page["next_before"] is None
    assert [{k: e[k] for k in ("seq", "kind", "amount", "balance", "counterparty", "operation", "idempotency_key")}
            for e in page["entries"]] == [
        {"seq": 2, "kind": "transfer_out", "amount": "30.00", "balance": "70.00", "counterparty": "b",
         "operation": "op-2", "idempotency_key": None},
        {"seq": 1, "kind": "deposit", "amount": "100.00", "balance": "100.00", "counterparty": None,
         "operation": "op-1", "idempotency_key": "k-1"}]
    assert page["entries"][0]["at"].endswith("Z") and page["entries"][0]["at"][10] == "T"
    assert [e["kind"] for e in history(data_client, "b").json["entries"]] == ["transfer_in"]


def test_pages_of_the_history_follow_next_before(data_client):
    for n in range(1, 5):
        commit(data_client, {"a": f"{n}.00"}, [entry("a", "deposit", "1.00", f"{n}.00", f"op-{n}")], f"op-{n}")
    first = history(data_client, "a", "?limit=3").json
    assert [e["seq"] for e in first["entries"]] == [4, 3, 2] and first["next_before"] == 2
    rest = history(data_client, "a", f"?limit=3&before={first['next_before']}").json
    assert [e["seq"] for e in rest["entries"]] == [1] and rest["next_before"] is None


def test_the_seed_routes_writes_are_kept_as_adjustments(data_client):
    set_amount(data_client, "a", "10.00")
    set_amount(data_client, "a", "4.00")
    assert [(e["kind"], e["amount"], e["balance"]) for e in history(data_client, "a").json["entries"]] == [
        ("adjustment", "-6.00", "4.00"), ("adjustment", "10.00", "10.00")]


@pytest.mark.parametrize("entries", [
    "x", [1], [entry("other", "deposit", "1.00", "1.00", "op")],
    [entry("a", "gift", "1.00", "1.00", "op")], [entry("a", "adjustment", "1.00", "1.00", "op")],
    [entry("a", "deposit", "0.00", "1.00", "op")], [entry("a", "deposit", "-1.00", "1.00", "op")],
    [entry("a", "deposit", "1.00", "2.00", "op")],                     # does not end at the balance written
    [entry("a", "deposit", "1.00", "1.00", "op", counterparty="b")],   # a counterparty only for a transfer
    [entry("a", "transfer_in", "1.00", "1.00", "op")],                  # and always for one
    [entry("a", "deposit", "1.00", "1.00", "op", key="with space")],
    [entry("a", "deposit", "1.00", "1.00", "")], [{**entry("a", "deposit", "1.00", "1.00", "op"), "account": []}],
    [entry("a", "deposit", "1.00", "1.00", "op"), entry("a", "deposit", "1.00", "3.00", "op")],  # 1 + 1 is not 3
    [entry("a", "deposit", "0.01", "0.01", "op")] * 201,
])
def test_entries_that_are_malformed_or_do_not_add_up_are_400_and_apply_nothing(data_client, entries):
    token = lock(data_client, B1, "a").json["token"]
    response = data_client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "a", "amount": "1.00", "token": token}], "unlock": True, "entries": entries})
    assert response.status_code == 400 and response.json["error"] in ("invalid_entries", "invalid_amount")
    assert amount_of(data_client, "a") is None


def test_entries_that_do_not_follow_from_the_balance_held_are_409_and_apply_nothing(data_client):
    commit(data_client, {"a": "5.00"}, [entry("a", "deposit", "5.00", "5.00", "op-1")], "op-1")
    refused = commit(data_client, {"a": "9.00"}, [entry("a", "deposit", "1.00", "9.00", "op-2")], "op-2")
    assert_error(refused, 409, "history_mismatch")
    assert [e["seq"] for e in history(data_client, "a").json["entries"]] == [1]


@pytest.mark.parametrize("query, code", [("?limit=0", "invalid_limit"), ("?limit=101", "invalid_limit"),
                                         ("?limit=x", "invalid_limit"), ("?before=0", "invalid_before"),
                                         ("?before=-3", "invalid_before"), ("?before=" + "9" * 40, "invalid_before")])
def test_a_malformed_history_query_is_400(data_client, query, code):
    set_amount(data_client, "a", "1.00")
    assert_error(history(data_client, "a", query), 400, code)


def test_the_history_of_an_unknown_account_is_404_and_of_another_business_path_403(data_client):
    assert_error(history(data_client, "nobody"), 404, "account_not_found")
    assert_error(data_client.get("/getHistory/b2/nobody", headers=B1), 403, "wrong_business")


# ---- the embedded store's history file -------------------------------------------------------------------

@pytest.fixture
def start(make_data_app):
    """start(journal, **overrides): a data app journaling to journal, compacting in the caller's thread; closed
    after the test if the test did not stop it."""
    def start(journal, **overrides):
        return make_data_app(load_data_settings(data_environ(DATA_JOURNAL=str(journal), **overrides)),
                             background=lambda job: job())
    return start


def stop(app):
    app.extensions["bank.store"].close()


def deposits(client, account, count, first=1):
    for n in range(first, first + count):
        assert commit(client, {account: f"{n}.00"}, [entry(account, "deposit", "1.00", f"{n}.00", f"op-{n}")],
                      f"op-{n}").status_code == 200


def seqs(client, account):
    page, found = history(client, account, "?limit=100").json, []
    while True:
        found += [(e["seq"], e["balance"]) for e in page["entries"]]
        if page["next_before"] is None:
            return found
        page = history(client, account, f"?limit=100&before={page['next_before']}").json


def test_the_history_survives_a_restart_and_is_numbered_on(tmp_path, start):
    journal = tmp_path / "bank.journal"
    app = start(journal)
    deposits(app.test_client(), "a", 3)
    stop(app)
    client = start(journal).test_client()
    deposits(client, "a", 1, first=4)
    assert seqs(client, "a") == [(4, "4.00"), (3, "3.00"), (2, "2.00"), (1, "1.00")]


def test_a_lost_history_file_is_made_again_from_the_journal(tmp_path, start):
    journal = tmp_path / "bank.journal"
    app = start(journal)
    deposits(app.test_client(), "a", 3)
    stop(app)
    for made in tmp_path.glob("bank.journal.history*"):
        made.unlink()
    assert seqs(start(journal).test_client(), "a") == [(3, "3.00"), (2, "2.00"), (1, "1.00")]


def test_compactions_drop_the_journals_entries_but_not_the_history(tmp_path, start):
    journal = tmp_path / "bank.journal"
    app = start(journal, DATA_COMPACT_MIN_BYTES="2000")
    deposits(app.test_client(), "a", 120)
    assert app.extensions["bank.store"].stats().compactions > 1
    stop(app)
    assert journal.read_bytes().count(b'"kind"') < 60      # most entries live only in the history file now
    client = start(journal).test_client()
    deposits(client, "a", 1, first=121)
    assert seqs(client, "a") == [(n, f"{n}.00") for n in range(121, 0, -1)]


def test_by_default_every_history_entry_is_kept_for_good(tmp_path, monkeypatch, make_data_app):
    monkeypatch.setattr("data.embedded.history_file.SWEEP_EVERY_SECONDS", 0.01)
    sweeps = []
    sweep = HistoryFile._sweep
    monkeypatch.setattr(HistoryFile, "_sweep", lambda self: sweeps.append(sweep(self)))
    now = [1_800_000_000.0]
    settings = load_data_settings(data_environ(DATA_JOURNAL=str(tmp_path / "bank.journal")))
    assert settings.history_retention is None
    client = make_data_app(settings, wall_clock=lambda: now[0]).test_client()
    deposits(client, "a", 2)
    now[0] += 20 * 365 * 86400
    deposits(client, "a", 1, first=3)
    wait_until(lambda: len(sweeps) >= 3, 5, "the history file never looked for old entries")
    assert seqs(client, "a") == [(3, "3.00"), (2, "2.00"), (1, "1.00")]


def test_history_entries_past_their_retention_are_dropped(tmp_path, monkeypatch, make_data_app):
    monkeypatch.setattr("data.embedded.history_file.SWEEP_EVERY_SECONDS", 0.05)
    now = [1_800_000_000.0]
    settings = load_data_settings(data_environ(DATA_JOURNAL=str(tmp_path / "bank.journal"),
                                               DATA_HISTORY_RETENTION="60"))
    app = make_data_app(settings, wall_clock=lambda: now[0])
    client = app.test_client()
    deposits(client, "a", 2)
    now[0] += 61
    deposits(client, "a", 1, first=3)
    wait_until(lambda: len(seqs(client, "a")) == 1, 5, "old entries were never dropped")
    assert seqs(client, "a") == [(3, "3.00")]
    stop(app)


def test_a_failed_history_file_is_503_to_reads_while_writes_go_on_and_a_restart_catches_it_up(tmp_path,
                                                                                               monkeypatch, start):
    journal = tmp_path / "bank.journal"
    app = start(journal)
    client = app.test_client()
    deposits(client, "a", 1)

    def full_disk(self, batch):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr("data.embedded.history_file.HistoryFile._write", full_disk)
    deposits(client, "a", 2, first=2)
    assert amount_of(client, "a") == "3.00"
    assert_error(history(client, "a"), 503, "history_unavailable")
    monkeypatch.undo()
    stop(app)
    assert seqs(start(journal).test_client(), "a") == [(3, "3.00"), (2, "2.00"), (1, "1.00")]


def test_commits_are_refused_while_the_history_file_is_too_far_behind(tmp_path, monkeypatch, start):
    monkeypatch.setattr("data.embedded.history_file.HISTORY_BEHIND_LIMIT_ENTRIES", 2)
    journal = tmp_path / "bank.journal"
    app = start(journal)
    client = app.test_client()
    stuck = threading.Event()
    monkeypatch.setattr("data.embedded.history_file.HistoryFile._write", lambda self, batch: stuck.wait(60))
    deposits(client, "a", 1)
    deposits(client, "a", 1, first=2)     # the writer is stuck on the first: two wait
    token = lock(client, B1, "a").json["token"]
    refused = client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "a", "amount": "3.00", "token": token}], "unlock": True,
        "entries": [entry("a", "deposit", "1.00", "3.00", "op-3")]})
    assert_error(refused, 503, "history_unavailable")
    assert client.get(f"/getAmount/b1/a?token={token}", headers=B1).json["amount"] == "2.00"
    stuck.set()                             # the writer goes on, so that the store can close

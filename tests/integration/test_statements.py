"""Statements kept for good on the etcd tier: the relay moves history out of etcd into PostgreSQL under Patroni,
each entry once, and a statement reads across the two without a gap or a duplicate, also while entries move."""
import threading

import psycopg
import pytest

from data.etcd.gateway import EtcdGateway, get, kvs
from data.etcd.keys import EtcdKeys
from data.etcd.relay import StatementRelay
from data.statements.postgres import StaleRelay, StatementStore
from shared.settings import TlsFiles, load_data_settings
from tests.helpers import (
    B1,
    B2,
    OPERATOR_TOKEN,
    amount_of,
    assert_error,
    bearer,
    lock,
    metric_samples,
    store_environ,
    wait_until,
)
from tests.integration.test_data_history import commit, entry, history


@pytest.fixture
def relaying_app(make_data_app, request, statements_cluster):
    """A data app on the etcd tier (the test's prefix) whose store relays to the run's statement store."""
    def make(**overrides):
        env = store_environ("etcd", request, **statements_cluster.data_settings(), **overrides)
        return make_data_app(load_data_settings(env))
    return make


def tls_files(tls_dir):
    return TlsFiles(str(tls_dir / "ca.pem"), str(tls_dir / "statements.pem"), str(tls_dir / "statements-key.pem"))


def kept(statements_cluster, tls_dir, prefix, query, params=()):
    """Rows of a query on the bank's schema in the statement store, as user bank."""
    member = statements_cluster.members[statements_cluster.primary()]
    files = tls_files(tls_dir)
    schema = StatementStore([], files, prefix, 1).schema
    with psycopg.connect(host=member.address, port=member.pg_port, dbname="bank", user="bank",
                         sslmode="verify-full", sslrootcert=files.ca, sslcert=files.cert, sslkey=files.key) as db:
        return db.execute(query.replace("{schema}", f'"{schema}"'), params).fetchall()


def health(client):
    return client.get("/health").json


def gauges(client):
    """The data server's unlabelled metrics, as an operator scrapes them: {name: value}."""
    samples = metric_samples(client.get("/metrics", headers=bearer(OPERATOR_TOKEN)).get_data(as_text=True))
    return {name: value for (name, labels), value in samples.items() if not labels}


def statement_seqs(client, account, limit):
    """Every seq of account's statement, read a page of limit at a time, newest first."""
    found, query = [], f"?limit={limit}"
    while True:
        page = history(client, account, query).json
        found += [e["seq"] for e in page["entries"]]
        if page["next_before"] is None:
            return found
        query = f"?limit={limit}&before={page['next_before']}"


def deposits(client, account, first, last):
    for n in range(first, last + 1):
        answer = commit(client, {account: f"{n}.00"}, [entry(account, "deposit", "1.00", f"{n}.00", f"op-{n}")],
                        f"op-{account}-{n}")
        assert answer.status_code == 200, answer.json


def test_two_relaying_data_servers_move_every_entry_once_and_statements_never_skip_or_repeat_one(
        relaying_app, statements_cluster, tls_dir, etcd_prefix):
    apps = [relaying_app(), relaying_app()]
    writer, reader = apps[0].test_client(), apps[1].test_client()
    done, reads = threading.Event(), []

    def read_while_moving():
        while not done.is_set():
            if history(reader, "a").status_code != 404:     # once the first deposit made it
                reads.append(statement_seqs(reader, "a", 7))

    thread = threading.Thread(target=read_while_moving)
    thread.start()
    try:
        deposits(writer, "a", 1, 60)
        deposits(writer, "b", 1, 3)
    finally:
        done.set()
        thread.join(30)
    wait_until(lambda: health(writer)["history_backlog"] == 0, 20, "the relay never drained etcd")
    # Every statement read while entries moved was whole: newest first, each seq once, down to 1.
    assert len(reads) > 3
    assert all(seqs == list(range(len(seqs), 0, -1)) for seqs in reads), [s for s in reads if s != sorted(s)[::-1]]
    assert statement_seqs(reader, "a", 7) == list(range(60, 0, -1))
    assert [e["balance"] for e in history(reader, "b").json["entries"]] == ["3.00", "2.00", "1.00"]
    rows = kept(statements_cluster, tls_dir, etcd_prefix, "SELECT account, seq, balance FROM {schema}.entries")
    assert sorted(rows) == sorted([("a", n, n * 100) for n in range(1, 61)] + [("b", n, n * 100) for n in (1, 2, 3)])
    # One relay at a time, the same one as both data servers see it.
    assert health(writer)["relay"] == health(reader)["relay"] is not None
    assert health(writer)["relay_lag_ms"] == 0 and health(writer)["relay_alarm"] is None
    assert (gauges(writer)["bank_data_history_backlog_entries"], gauges(writer)["bank_data_relay_lag_seconds"],
            gauges(writer)["bank_data_relay_alarm"]) == (0, 0, 0)


def test_a_relay_paused_past_its_lease_moves_and_deletes_nothing_when_it_wakes(
        make_data_app, request, etcd_cluster, statements_cluster, tls_dir, etcd_prefix, monkeypatch):
    # A data server without a statement store writes the entries: they wait in etcd for a relay.
    client = make_data_app(load_data_settings(store_environ("etcd", request))).test_client()
    deposits(client, "a", 1, 3)
    gateway, keys = EtcdGateway(etcd_cluster.endpoints, 2), EtcdKeys(etcd_prefix)
    statements = StatementStore(statements_cluster.rest_urls, tls_files(tls_dir), etcd_prefix, 2)
    paused, successor = (StatementRelay(gateway, keys, statements, name) for name in ("paused", "successor"))
    try:
        assert paused._step() == 0.0            # it campaigned, won and moved the three
        deposits(client, "a", 4, 5)
        relay_key = gateway.txn(success=[get(keys.relay())])["responses"][0]
        gateway.revoke(kvs(relay_key)[0]["lease"])     # paused past its lease: its r/relay is gone
        assert successor._step() == 0.0         # the successor relays now, with a higher token
        deposits(client, "a", 6, 7)
        with pytest.raises(StaleRelay):
            paused._move_batch()                # wakes and tries the next batch: PostgreSQL refuses it
        with monkeypatch.context() as without_the_postgresql_fence:
            without_the_postgresql_fence.setattr(statements, "keep", lambda *args: None)
            with pytest.raises(StaleRelay):
                paused._move_batch()            # and were it taken there, etcd would delete none of it
        assert health(client)["history_backlog"] == 2       # etcd still holds the batch
        assert successor._step() == 0.0
        assert health(client)["history_backlog"] == 0
    finally:
        for relay in (paused, successor):
            relay._drop_connection()
        statements.close()
    rows = kept(statements_cluster, tls_dir, etcd_prefix, "SELECT account, seq FROM {schema}.entries")
    assert sorted(rows) == [("a", n) for n in range(1, 8)]


def test_the_largest_balance_the_data_tier_takes_is_kept_to_the_cent(relaying_app):
    client = relaying_app().test_client()
    largest = "999999999999999999.99"       # 10^20 - 1 cents: past a 64-bit integer
    assert commit(client, {"a": largest}, [entry("a", "deposit", largest, largest, "op-1")], "op-a-1").status_code \
        == 200
    deposits(client, "b", 1, 1)
    wait_until(lambda: health(client)["history_backlog"] == 0, 20, "the relay never moved the entries")
    assert [(e["amount"], e["balance"]) for e in history(client, "a").json["entries"]] == [(largest, largest)]
    assert health(client)["relay_alarm"] is None


def test_an_entry_kept_with_other_contents_stops_the_relay_and_is_never_overwritten(
        relaying_app, statements_cluster, tls_dir, etcd_prefix):
    client = relaying_app().test_client()
    deposits(client, "a", 1, 1)
    wait_until(lambda: health(client)["history_backlog"] == 0, 20, "the relay never moved the first entry")
    kept(statements_cluster, tls_dir, etcd_prefix, "INSERT INTO {schema}.entries VALUES "
         "('a', 2, 'deposit', 999, 999, NULL, 'forged', NULL, 0) RETURNING seq")
    deposits(client, "a", 2, 2)
    wait_until(lambda: health(client)["relay_alarm"] is not None, 20, "the relay never raised its alarm")
    assert "other contents" in health(client)["relay_alarm"]
    assert health(client)["history_backlog"] == 1
    assert (gauges(client)["bank_data_relay_alarm"], gauges(client)["bank_data_history_backlog_entries"]) == (1, 1)
    assert kept(statements_cluster, tls_dir, etcd_prefix,
                "SELECT operation, cents FROM {schema}.entries WHERE seq = 2") == [("forged", 999)]
    # Every data server shows the alarm, and none relays past it.
    other = relaying_app().test_client()
    assert health(other)["relay_alarm"] == health(client)["relay_alarm"] and health(other)["relay"] is None
    # The statement shows what the bank committed: the entry etcd still holds.
    assert [e["operation"] for e in history(client, "a").json["entries"]] == ["op-2", "op-1"]


def test_past_the_backlog_cap_commits_are_refused_and_nothing_is_applied(make_data_app, request, tls_dir,
                                                                       etcd_cluster):
    # A statement store that never answers: the entries wait in etcd, up to the cap.
    env = store_environ("etcd", request, STATEMENTS_PATRONI="https://127.0.0.1:9", DATA_HISTORY_BACKLOG_LIMIT="4",
                        STATEMENTS_TLS_CA=str(tls_dir / "ca.pem"), STATEMENTS_TLS_CERT=str(tls_dir / "statements.pem"),
                        STATEMENTS_TLS_KEY=str(tls_dir / "statements-key.pem"))
    client = make_data_app(load_data_settings(env)).test_client()
    deposits(client, "a", 1, 4)
    token = lock(client, B1, "a").json["token"]
    refused = client.post("/commit/b1", headers=B1, json={
        "writes": [{"account": "a", "amount": "5.00", "token": token}], "unlock": True,
        "operations": [{"id": "op-a-5", "request": "request op-a-5", "result": {}}],
        "entries": [entry("a", "deposit", "1.00", "5.00", "op-5")]})
    assert_error(refused, 503, "history_unavailable")
    assert client.post("/unLock/b1/a", headers=B1, json={"token": token}).status_code == 200
    assert "DATA_HISTORY_BACKLOG_LIMIT" in refused.json["message"] and refused.headers["Retry-After"] == "1"
    assert amount_of(client, "a") == "4.00"
    assert health(client)["history_backlog"] == 4
    # A retry of a commit applied before is still told its first answer.
    again = commit(client, {"a": "4.00"}, [entry("a", "deposit", "1.00", "4.00", "op-4")], "op-a-4")
    assert again.status_code == 200 and again.json["replayed"] is True
    # The statement still reads, from etcd, while the statement store is away.
    assert [e["seq"] for e in client.get("/getHistory/b2/a?limit=2", headers=B2).json["entries"]] == [4, 3]

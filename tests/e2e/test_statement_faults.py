"""Statements kept for good through faults: the relay's data server killed, the PostgreSQL primary killed, the
statement store down for longer than etcd may hold the backlog. The checker proves every account's statement at
the end (each acknowledged operation once, no gap), read across etcd and PostgreSQL; each test prints what it
injected and what it found."""
import time

import pytest
import requests

from tests.e2e.conftest import start_etcd_bank
from tests.e2e.test_etcd_bank import FAULT_RUN_SECONDS, assert_exact_and_serving_since
from tests.e2e.workload import BackgroundCheck, assert_served_to_the_end
from tests.helpers import wait_until

# The backlog etcd may hold in the outage test: reached within seconds of the workload's writes.
OUTAGE_BACKLOG_LIMIT = 150
# Longest the bank may take to serve again once the statement store is back: its members restart on their data
# (about 5 s measured), a primary is elected, and the relay drains the backlog below the cap.
STORE_RETURN_STALL = 25
DRAIN_SECONDS = 30
OUTAGE_RUN_SECONDS = 40


@pytest.fixture
def relaying_bank(servers, etcd_cluster, etcd_prefix, statements_cluster, tmp_path):
    """Two data servers relaying to the run's statement store, three business servers that know both."""
    def start(**overrides):
        return start_etcd_bank(servers, tmp_path, DATA_STORE="etcd", ETCD_ENDPOINTS=",".join(etcd_cluster.endpoints),
                               ETCD_PREFIX=etcd_prefix, LOCK_TTL="2",
                               **statements_cluster.data_settings(), **overrides)
    return start


def health(server):
    return requests.get(f"{server.url}/health", timeout=5).json()


def background_check(system, seconds, seed):
    return BackgroundCheck(system.apis(timeout=4), workers=12, accounts=4, duration=seconds, seed=seed,
                           attempts=60, retry_pause=0.1)


def assert_all_relayed(data):
    """Every entry leaves etcd for the statement store, with no alarm, once the workload is over."""
    wait_until(lambda: health(data[0])["history_backlog"] == 0, DRAIN_SECONDS, "the backlog never drained")
    assert health(data[0])["relay_alarm"] is None


def test_kill_9_of_the_relaying_data_server_mid_workload(relaying_bank):
    system, data = relaying_bank()
    run = background_check(system, FAULT_RUN_SECONDS, 41)
    run.wait_for(150)
    relay = health(data[0])["relay"]
    relaying = next(server for server in data if f":{server.worker_pids()[0]}" in relay)
    survivor = next(server for server in data if server is not relaying)
    relaying.kill()
    killed_at = time.monotonic()
    print(f"INJECTED kill -9 of the relaying data server ({relay}) after {run.check.acknowledged_writes} "
          "acknowledged writes")
    report = run.join()
    assert_exact_and_serving_since(report, killed_at)
    wait_until(lambda: health(survivor)["history_backlog"] == 0, DRAIN_SECONDS, "the backlog never drained")
    assert health(survivor)["relay"] != relay
    print(f"FOUND the other data server relays now ({health(survivor)['relay']}); "
          f"{sum(len(entries) for entries in report.statements.values())} entries proved")


def test_kill_9_of_the_postgresql_primary_mid_workload(relaying_bank, statements_cluster):
    system, data = relaying_bank()
    run = background_check(system, FAULT_RUN_SECONDS, 42)
    run.wait_for(150)
    primary = statements_cluster.primary()
    statements_cluster.kill_postgres(primary)
    killed_at = time.monotonic()
    print(f"INJECTED kill -9 of the PostgreSQL primary {primary} after {run.check.acknowledged_writes} "
          "acknowledged writes")
    # The bank's writes never wait for the statement store: they go on through the failover.
    assert_exact_and_serving_since(run.join(), killed_at)
    roles = statements_cluster.wait_ready(60)
    assert roles[primary] == "sync_standby", roles
    assert_all_relayed(data)
    print(f"FOUND Patroni failed over and {primary} rejoined as standby ({roles}); the backlog drained")


def test_the_statement_store_down_past_the_backlog_cap_refuses_writes_until_it_is_back(relaying_bank,
                                                                                      statements_cluster):
    system, data = relaying_bank(DATA_HISTORY_BACKLOG_LIMIT=str(OUTAGE_BACKLOG_LIMIT))
    # Long enough for the backlog to fill, the members to come back and the bank to be seen serving after.
    run = background_check(system, OUTAGE_RUN_SECONDS, 43)
    run.wait_for(100)
    for name in statements_cluster.members:
        statements_cluster.kill_host(name)
    print(f"INJECTED kill -9 of both PostgreSQL members (Patroni too) after {run.check.acknowledged_writes} "
          "acknowledged writes")

    def refused_for_history():
        return run.check.answered_with("history_unavailable")

    wait_until(refused_for_history, 30, "the bank never refused a write for its history backlog")
    assert health(data[0])["history_backlog"] <= OUTAGE_BACKLOG_LIMIT + 50
    for name in statements_cluster.members:
        statements_cluster.start_member(name)
    back_at = time.monotonic()
    statements_cluster.wait_ready(60)
    print(f"INJECTED a restart of both members on their data, {len(refused_for_history())} operations refused "
          "503 history_unavailable meanwhile")
    report = run.join()
    print(f"FOUND {len(report.violations)} violations, {len(report.unknown)} unknown outcomes")
    assert report.violations == []
    assert_served_to_the_end(report, back_at, STORE_RETURN_STALL)
    assert_all_relayed(data)

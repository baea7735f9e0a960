"""A long check run reaches a steady state: no growth in threads, open files or memory after warm-up.

SOAK_SECONDS sets the length (default 45 s, so that it fits in `make test`; run it longer by hand).
"""
import os
import time

import requests

from harness.processes import proc_status
from tests.e2e.workload import BackgroundCheck, assert_served_to_the_end
from tests.helpers import DATA_TOKENS, InThread, bearer, wait_until

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "45"))
# 50 accounts share the workload: each is written a few times a second, so allow a longer quiet spell than a fault
# test's 4 accounts.
SOAK_GAP_SECONDS = 10


def resources(pid):
    status = proc_status(pid)
    return {"threads": int(status["Threads"]), "open files": len(os.listdir(f"/proc/{pid}/fd")),
            "resident kB": int(status["VmRSS"].split()[0])}


# Each business server's worker threads, as business_server_env starts them: 3 workers of 16 threads.
THREADS_A_WORKER = 16
WORKER_THREADS = 3 * THREADS_A_WORKER
DATA_THREADS = 16               # the data server's, as data_server_env starts it


def start_the_data_servers_whole_pool(data):
    """gthread starts a worker's threads only as requests need them, so a pool may still grow after any warm-up:
    all but one of the data server's threads wait their turn on a held account, the last answers /health, then the
    account is let go."""
    holder, waiter = bearer(DATA_TOKENS["b1"]), bearer(DATA_TOKENS["b2"])
    token = requests.post(f"{data.url}/getLock/b1/pool", headers=holder, timeout=5).json()["token"]
    reads = [InThread(requests.get, f"{data.url}/getAmount/b2/pool?wait_ms=10000", headers=waiter, timeout=15)
             for _ in range(DATA_THREADS - 1)]
    wait_until(lambda: requests.get(f"{data.url}/health", timeout=5).json()["waiting"] == DATA_THREADS - 1, 10,
               "the data server's threads never all waited")
    requests.post(f"{data.url}/unLock/b1/pool", headers=holder, json={"token": token}, timeout=5)
    assert {read.result(15).status_code for read in reads} == {404}


def test_a_long_check_run_grows_no_threads_files_or_memory_after_warm_up(start_system):
    # Short retentions, so that the data server's records reach their steady state early in the run.
    system = start_system(data_env={"DATA_OPERATION_RETENTION": "10", "DATA_RETRY_RECORD_RETENTION": "10"})
    start_the_data_servers_whole_pool(system.data)
    run = BackgroundCheck(system.apis(), workers=16, accounts=50, duration=SOAK_SECONDS, seed=17)
    run.wait_for(1)
    started_at = time.monotonic()
    time.sleep(SOAK_SECONDS / 3)    # the warm-up is a span of the run's own time, not a condition
    processes = {"data": system.data.worker_pids()[0]}
    processes.update({f"{server.name} worker {pid}": pid
                      for server in system.businesses for pid in server.worker_pids()})
    processes.update({f"{server.name} batcher": server.batcher_pid() for server in system.businesses})
    after_warm_up = {name: resources(pid) for name, pid in processes.items()}
    report = run.join(SOAK_SECONDS * 3)
    at_end = {name: resources(pid) for name, pid in processes.items()}
    for name in processes:
        print(f"{name}: after warm-up {after_warm_up[name]}, at the end {at_end[name]}")
    assert report.violations == []
    assert sum(1 for event in report.events if event.outcome == "ok" and event.kind != "balance") > 1000
    # Served to the end: every account written again and again until the last second of the run.
    assert_served_to_the_end(report, started_at, within_seconds=SOAK_GAP_SECONDS, steady_gap_seconds=SOAK_GAP_SECONDS)
    for name in processes:
        start, end = after_warm_up[name], at_end[name]
        # A batcher has a thread and a socket for each worker thread that has sent it an operation so far, and a
        # worker starts its pool's threads as it needs them: each may grow to the threads it serves, no more.
        serves = WORKER_THREADS if name.endswith("batcher") else THREADS_A_WORKER if " worker " in name else 0
        connections_to_come = max(0, serves + 2 - start["threads"])
        assert end["threads"] <= start["threads"] + 2 + connections_to_come, name
        assert end["open files"] <= start["open files"] + 10 + connections_to_come, name
        assert end["resident kB"] <= start["resident kB"] * 1.15 + 8_000, name

"""Faults injected while the check workload runs across all three business servers: the checker finds nothing, and
the bank serves every account again after the fault, steadily until the workload ends.

Each test prints what it injected and what it found.
"""
import os
import re
import signal
import threading
import time

import requests

from tests.e2e.workload import BackgroundCheck, assert_served_to_the_end
from tests.helpers import DATA_TOKENS, bearer

LOCK_TTL = 2
LOCK_WAIT = 2


def test_kill_9_of_a_business_worker_then_of_a_whole_business_server(start_system):
    system = start_system(data_env={"LOCK_TTL": str(LOCK_TTL)}, business_env={"LOCK_WAIT": str(LOCK_WAIT)})
    run = BackgroundCheck(system.apis(timeout=3), workers=16, accounts=4, duration=16, seed=21, attempts=40,
                          retry_pause=0.1)
    run.wait_for(150)
    worker = system.businesses[0].worker_pids()[0]
    os.kill(worker, signal.SIGKILL)
    print(f"INJECTED kill -9 of business1's worker {worker} after {run.check.acknowledged_writes} acknowledged writes")
    run.wait_for(run.check.acknowledged_writes + 150)
    system.businesses[1].kill()
    killed_at = time.monotonic()
    print(f"INJECTED kill -9 of the whole business2 server after {run.check.acknowledged_writes} acknowledged writes")
    report = run.join()
    print(f"FOUND {len(report.violations)} violations, {len(report.unknown)} unknown outcomes")
    assert report.violations == []
    # The dead server's locks expire within LOCK_TTL, and a lock cycle waits at most LOCK_WAIT for them.
    assert_served_to_the_end(report, killed_at, within_seconds=LOCK_TTL + LOCK_WAIT + 1)


def test_pausing_a_business_server_again_and_again_mid_workload_breaks_no_invariant(start_system):
    system = start_system(data_env={"LOCK_TTL": "1"}, business_env={"LOCK_WAIT": "1"})
    run = BackgroundCheck(system.apis(timeout=2), workers=16, accounts=3, duration=18, seed=5, attempts=40,
                          retry_pause=0.1)
    paused = system.businesses[0]
    for _ in range(3):
        run.wait_for(run.check.acknowledged_writes + 100)
        paused.signal(signal.SIGSTOP)
        print(f"INJECTED SIGSTOP of business1 for 2.5 s (2.5 leases) after {run.check.acknowledged_writes} "
              "acknowledged writes")
        time.sleep(2.5)     # the fault itself: a pause longer than the leases
        paused.signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        print("INJECTED SIGCONT of business1")
    report = run.join()
    print(f"FOUND {len(report.violations)} violations, {len(report.unknown)} unknown outcomes")
    assert report.violations == []
    # The bank serves every account again once business1's stale leases (1 s) are gone, on all three servers.
    assert_served_to_the_end(report, resumed_at, within_seconds=3)


def test_a_paused_lease_holders_late_write_is_fenced_off(start_system):
    system = start_system(data_env={"LOCK_TTL": "1", "LOG_LEVEL": "DEBUG"}, business_env={"LOCK_WAIT": "5"})
    b1, b2 = system.apis(timeout=15)[:2]
    assert b2.deposit("p-1", "100.00").status == 200 and b2.deposit("p-2", "1.00").status == 200
    data = requests.Session()
    as_b3 = bearer(DATA_TOKENS["b3"])
    held = data.post(f"{system.data.url}/getLock/b3/p-2", headers=as_b3, timeout=5).json()["token"]
    transfer = {}
    sender = threading.Thread(target=lambda: transfer.update(reply=b1.transfer("p-1", "p-2", "10.00")))
    sender.start()
    paused = system.businesses[0]
    for _ in range(20):
        # business1 waits at the data server for p-1 and p-2 together (b3 holds p-2).
        wait_for_health(system.data.url, "waiting", 1, "business1 never queued for p-2")
        paused.signal(signal.SIGSTOP)
        if requests.get(f"{system.data.url}/health", timeout=5).json()["waiting"] == 1:
            break
        paused.signal(signal.SIGCONT)
    print("INJECTED SIGSTOP of business1 while it waits for p-1 and p-2; b3 releases p-2, so both are granted")
    data.post(f"{system.data.url}/unLock/b3/p-2", headers=as_b3, json={"token": held}, timeout=5)
    wait_for_health(system.data.url, "leases", 0, "business1's leases on p-1 and p-2 never expired")
    print("both of business1's leases have expired (LOCK_TTL 1 s); business2 deposits 5.00 into p-1")
    assert b2.deposit("p-1", "5.00").body["balance"] == "105.00"
    paused.signal(signal.SIGCONT)
    print("INJECTED SIGCONT of business1")
    sender.join(30)
    reply = transfer["reply"]
    print(f"FOUND the late transfer answered {reply.status} {reply.body}")
    assert (reply.status, reply.error) == (503, "account_busy")
    assert re.search(r"op=commit business_id=b1 status=409 result=not_lock_holder", system.data.log(tail=10 ** 9))
    assert [b2.balance(account).body["balance"] for account in ("p-1", "p-2")] == ["105.00", "1.00"]


def wait_for_health(data_url, count_name, count, failure, timeout=10):
    """Wait until the data server's /health shows count of count_name (waiting, leases, ...)."""
    deadline = time.monotonic() + timeout
    while requests.get(f"{data_url}/health", timeout=5).json()[count_name] != count:
        assert time.monotonic() < deadline, failure
        time.sleep(0.005)


def test_kill_9_of_the_data_server_then_a_restart_from_its_journal(start_system):
    system = start_system(data_env={"LOCK_TTL": str(LOCK_TTL)},
                          business_env={"DATA_TIMEOUT": "0.5", "LOCK_WAIT": str(LOCK_WAIT)})
    run = BackgroundCheck(system.apis(timeout=3), workers=16, accounts=4, duration=18, seed=8, attempts=60,
                          retry_pause=0.1)
    run.wait_for(200)
    system.data.kill()
    print(f"INJECTED kill -9 of the data server after {run.check.acknowledged_writes} acknowledged writes")
    while_down = system.apis()[0].deposit("while-down", "1.00")
    print(f"while it is down a deposit gets {while_down.status} {while_down.body} in {while_down.seconds:.2f} s")
    assert (while_down.status, while_down.error) == (503, "data_unavailable") and while_down.seconds < 3
    system.data.start()
    restarted_at = time.monotonic()
    print("INJECTED restart of the data server from its journal")
    report = run.join()
    print(f"FOUND {len(report.violations)} violations, {len(report.unknown)} unknown outcomes")
    assert report.violations == []
    # The journal brings back the leases held at the kill: they run out by LOCK_TTL, waited for up to LOCK_WAIT.
    assert_served_to_the_end(report, restarted_at, within_seconds=LOCK_TTL + LOCK_WAIT + 1)


def test_a_hung_data_server_gets_503_within_the_timeout_and_nothing_half_applied(start_system):
    system = start_system(data_env={"LOCK_TTL": str(LOCK_TTL)},
                          business_env={"DATA_TIMEOUT": "0.5", "LOCK_WAIT": str(LOCK_WAIT)})
    run = BackgroundCheck(system.apis(timeout=3), workers=16, accounts=4, duration=18, seed=13, attempts=60,
                          retry_pause=0.1)
    run.wait_for(200)
    system.data.signal(signal.SIGSTOP)
    print(f"INJECTED SIGSTOP of the data server after {run.check.acknowledged_writes} acknowledged writes")
    try:
        replies = [api.deposit("while-hung", "1.00") for api in system.apis()]
    finally:
        system.data.signal(signal.SIGCONT)
    resumed_at = time.monotonic()
    print("INJECTED SIGCONT of the data server")
    for reply in replies:
        print(f"while it hangs a deposit gets {reply.status} {reply.body} in {reply.seconds:.2f} s")
        assert (reply.status, reply.error) == (503, "data_unavailable") and reply.seconds < 2.5
    report = run.join()
    print(f"FOUND {len(report.violations)} violations, {len(report.unknown)} unknown outcomes")
    assert report.violations == []
    # Lock requests that waited at the hung server are served after SIGCONT for callers gone since: their leases
    # run out by LOCK_TTL, and a lock cycle waits at most LOCK_WAIT for them.
    assert_served_to_the_end(report, resumed_at, within_seconds=LOCK_TTL + LOCK_WAIT + 1)

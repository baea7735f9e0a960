"""A business server's workers hand their operations to one batcher: one lock cycle for all of them; its death is
answered at once, it is started again, and it never outlives its server."""
import os
import signal
import threading
import time

import requests

from harness.processes import ROOT, proc_stat
from tests.e2e.workload import BackgroundCheck, assert_served_to_the_end
from tests.helpers import CLIENT_TOKEN, DATA_TOKENS, OPERATOR_TOKEN, bearer, metric_samples, metric_sum

DEPOSITS = 24


def test_the_operations_of_every_worker_wait_in_one_line_and_go_in_one_lock_cycle(start_system):
    # More threads a worker than deposits: a worker that took most of them still answers the test's scrapes.
    system = start_system(data_env={"LOCK_TTL": "30"}, business_env={"LOCK_WAIT": "20", "DATA_TIMEOUT": "2",
                                                                     "BUSINESS_THREADS": str(DEPOSITS + 8)})
    business, data = system.businesses[0], requests.Session()
    assert len(business.worker_pids()) == 3
    as_b3 = bearer(DATA_TOKENS["b3"])
    held = data.post(f"{system.data.url}/getLock/b3/shared", headers=as_b3, timeout=5).json()["token"]
    answers = []

    def deposit():
        # A connection each, so that the deposits land on all three of business1's workers.
        answers.append(requests.post(f"{business.url}/deposit/shared/1.00", headers=bearer(CLIENT_TOKEN),
                                     timeout=30))

    senders = [threading.Thread(target=deposit) for _ in range(DEPOSITS)]
    senders[0].start()
    wait_until(lambda: waiting_at_data(system.data) == 1, "the first deposit's lock request never waited for b3")
    for sender in senders[1:]:
        sender.start()
    # Every other deposit waits behind that lock cycle, whichever worker took it (with a line per worker, each
    # worker's first deposit would lead a lock cycle of its own and not wait in a line).
    wait_until(lambda: queue_depth(business) == DEPOSITS - 1, "the deposits never all waited in one line")
    data.post(f"{system.data.url}/unLock/b3/shared", headers=as_b3, json={"token": held}, timeout=5)
    for sender in senders:
        sender.join(30)
    assert sorted(answer.status_code for answer in answers) == [200] * DEPOSITS
    assert sorted(int(answer.json()["balance"][:-3]) for answer in answers) == list(range(1, DEPOSITS + 1))
    batches = scrape(business)
    # The leader's cycle held one deposit; the next held every one that had waited.
    assert metric_sum(batches, "bank_business_batch_size_count") == 2
    assert metric_sum(batches, "bank_business_batch_size_bucket", le="16.0") == 1


def test_a_killed_batcher_is_answered_at_once_started_again_and_the_bank_stays_exact(start_system):
    system = start_system(data_env={"LOCK_TTL": "2"}, business_env={"LOCK_WAIT": "2"})
    business = system.businesses[0]
    run = BackgroundCheck(system.apis(timeout=3), workers=16, accounts=4, duration=14, seed=33, attempts=40,
                          retry_pause=0.1)
    run.wait_for(150)
    killed = business.batcher_pid()
    os.kill(killed, signal.SIGKILL)
    killed_at = time.monotonic()
    print(f"INJECTED kill -9 of business1's batcher {killed} after {run.check.acknowledged_writes} acknowledged writes")
    first = requests.post(f"{business.url}/deposit/while-restarting/1.00", headers=bearer(CLIENT_TOKEN), timeout=5)
    answered_in = time.monotonic() - killed_at
    print(f"a deposit sent at once got {first.status_code} {first.text.strip()} in {answered_in:.2f} s")
    assert first.status_code == 200 or first.json()["error"] in ("batcher_unavailable", "data_unavailable")
    assert answered_in < 2
    report = run.join()
    print(f"FOUND {len(report.violations)} violations, {len(report.unknown)} unknown outcomes")
    assert report.violations == []
    assert business.batcher_pid() not in (None, killed)
    # Its locks ran out by LOCK_TTL (2 s), waited for at most LOCK_WAIT (2 s): then every account is written again.
    assert_served_to_the_end(report, killed_at, within_seconds=2 + 2 + 1)
    assert requests.post(f"{business.url}/deposit/after-restart/1.00", headers=bearer(CLIENT_TOKEN),
                         timeout=5).status_code == 200


def test_the_batcher_goes_with_its_server_however_the_server_goes(start_system):
    system = start_system()
    stopped, killed = system.businesses[0], system.businesses[1]
    batchers = {stopped.batcher_pid(), killed.batcher_pid()}
    assert None not in batchers
    stopped.stop()
    os.kill(killed.process.pid, signal.SIGKILL)     # the master alone: its batcher sees its stdin close
    killed.process.wait(5)
    wait_until(lambda: not any(alive(pid) for pid in batchers), "a batcher outlived its server", timeout=10)
    # The stopped server's socket is gone with it; the killed one's goes at the next start of a business server.
    sockets = [ROOT / "var" / "run" / f"batcher-{server.process.pid}.sock" for server in (stopped, killed)]
    assert not sockets[0].exists() and sockets[1].exists()
    killed.start()
    assert not sockets[1].exists() and killed.batcher_pid() is not None


def alive(pid):
    fields = proc_stat(pid)
    return bool(fields) and fields[0] != "Z"


def wait_until(condition, failure, timeout=15):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def waiting_at_data(data):
    return requests.get(f"{data.url}/health", timeout=5).json()["waiting"]


def scrape(server):
    return metric_samples(requests.get(f"{server.url}/metrics", headers=bearer(OPERATOR_TOKEN), timeout=5).text)


def queue_depth(server):
    return metric_sum(scrape(server), "bank_business_queue_depth")

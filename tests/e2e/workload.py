"""The check workload run in the background while an end-to-end test does something else."""
import sys
import threading
import time

from client.check import BankCheck


class BackgroundCheck:
    """A BankCheck running in a thread while the test injects faults or takes measurements."""

    def __init__(self, apis, **options):
        self.check = BankCheck(apis, out=sys.stdout, **options)
        self.report = None
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self):
        self.report = self.check.run()

    def wait_for(self, operations, timeout=60):
        deadline = time.monotonic() + timeout
        while self.check.completed < operations:
            assert self._thread.is_alive() and time.monotonic() < deadline, \
                f"the workload stopped at {self.check.completed} operations"
            time.sleep(0.05)

    def join(self, timeout=180):
        self._thread.join(timeout)
        assert self.report is not None, "the workload did not finish"
        return self.report


def written_after(report, moment):
    """The accounts that an acknowledged write finished on after moment (time.monotonic())."""
    return {account for event in report.events if event.outcome == "ok" and event.kind != "balance"
            and event.finished_at > moment for account in event.accounts}


def longest_stall(report, since):
    """The longest time after since in which no operation finished."""
    finished = sorted(event.finished_at for event in report.events if event.finished_at >= since)
    return max((later - earlier for earlier, later in zip([since, *finished], finished)), default=0.0)

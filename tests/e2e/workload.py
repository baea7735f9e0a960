"""The check workload run in the background while an end-to-end test does something else, and what a fault test
asks of its report: that the bank kept serving every account, to the end."""
import sys
import threading
import time

from client.check import BankCheck
from tests.helpers import CHECK_CLIENTS

# Longest an account may go without an acknowledged write once the bank has recovered from a fault. With 4 accounts
# and 12-16 workers each account is written tens of times a second, so only a bank that stopped serving leaves it.
STEADY_GAP_SECONDS = 3.0


class BackgroundCheck:
    """A BankCheck running in a thread while the test injects faults or takes measurements."""

    def __init__(self, apis, clients=CHECK_CLIENTS, **options):
        self.check = BankCheck(apis, clients, out=sys.stdout, **options)
        self.report = None
        self._failure = None
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self):
        try:
            self.report = self.check.run()
        except BaseException as failure:    # SystemExit too (an account it could not open): join reports it
            self._failure = failure

    def wait_for(self, acknowledged_writes, timeout=60):
        """Wait until the bank has acknowledged this many writes in all (refusals and unknown outcomes count not)."""
        deadline = time.monotonic() + timeout
        while self.check.acknowledged_writes < acknowledged_writes:
            assert self._thread.is_alive(), f"the workload stopped: {self._failure!r}"
            assert time.monotonic() < deadline, \
                f"the bank acknowledged {self.check.acknowledged_writes} writes of {acknowledged_writes} in {timeout} s"
            time.sleep(0.05)

    def join(self, timeout=180):
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the workload did not finish in {timeout} s"
        assert self.report is not None, f"the workload failed: {self._failure!r}"
        return self.report


def write_times(report, account, since):
    """When each acknowledged write on account after since (time.monotonic()) finished, in order."""
    return sorted(event.finished_at for event in report.events if event.outcome == "ok" and event.key is not None
                  and account in event.accounts and event.finished_at > since)


def assert_served_to_the_end(report, since, within_seconds, steady_gap_seconds=STEADY_GAP_SECONDS):
    """The bank recovered from the fault at since (time.monotonic()) within within_seconds and served steadily from
    then until the workload ended: from the moment it recovered, no account goes steady_gap_seconds without an
    acknowledged write, its last write to the end included. A bank that never comes back fails this, as does one
    that serves again for a while and then stops, or stalls anew. Prints what it found."""
    gaps, recovered = {}, {}
    for account in report.written:
        times = [since, *write_times(report, account, since), report.ended_at]
        spans = list(zip(times, times[1:]))
        # The account is steady from the end of its last gap too long (from the fault, if it had none).
        recovered[account] = max([later for earlier, later in spans if later - earlier > steady_gap_seconds],
                                 default=since)
        gaps[account] = max((later - earlier for earlier, later in spans if earlier >= recovered[account]), default=0)
    steady_from = max(recovered.values())
    print(f"FOUND every account steady {steady_from - since:.2f} s after the fault, then written at most "
          f"{max(gaps.values()):.2f} s apart until the workload ended {report.ended_at - since:.1f} s after the fault")
    stalled = {account: round(at - since, 2) for account, at in recovered.items() if at >= report.ended_at}
    assert stalled == {}, f"accounts with no write in the last {steady_gap_seconds} s of the workload: {stalled}"
    late = {account: round(at - since, 2) for account, at in recovered.items() if at - since > within_seconds}
    assert late == {}, f"accounts steady only this long after the fault, past {within_seconds} s: {late}"
    # Steadily means something only over a tail several gaps long.
    tail = report.ended_at - steady_from
    assert tail >= 2 * steady_gap_seconds, f"the workload ended {tail:.1f} s after the bank recovered: too soon to tell"

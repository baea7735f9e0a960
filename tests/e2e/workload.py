"""The check workload run in the background while an end-to-end test does something else, and what a fault test
asks of its report: that the bank kept serving every account, to the end."""
import sys
import threading
import time

from client.check import BankCheck

# Longest an account may go without an acknowledged write once the bank has recovered from a fault. With 4 accounts
# and 12-16 workers each account is written tens of times a second, so only a bank that stopped serving leaves it.
STEADY_GAP_SECONDS = 3.0


class BackgroundCheck:
    """A BankCheck running in a thread while the test injects faults or takes measurements."""

    def __init__(self, apis, **options):
        self.check = BankCheck(apis, out=sys.stdout, **options)
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
    return sorted(event.finished_at for event in report.events if event.outcome == "ok" and event.kind != "balance"
                  and account in event.accounts and event.finished_at > since)


def assert_served_to_the_end(report, since, within_seconds, steady_gap_seconds=STEADY_GAP_SECONDS):
    """Every account is written again within within_seconds of since, and from then on until the workload ended it
    never goes steady_gap_seconds without an acknowledged write: a bank that serves again for a while after a fault
    and then stops fails this, as does one that never comes back. Prints what it found."""
    firsts, gaps = {}, {}
    for account in report.final:
        times = write_times(report, account, since)
        assert times, f"{account} was never written after the fault"
        firsts[account] = times[0] - since
        gaps[account] = max(later - earlier for earlier, later in zip(times, [*times[1:], report.ended_at]))
    print(f"FOUND every account written again {max(firsts.values()):.2f} s after the fault at the latest, then at "
          f"most {max(gaps.values()):.2f} s apart until the workload ended "
          f"{report.ended_at - since:.1f} s after the fault")
    late = {account: round(first, 2) for account, first in firsts.items() if first > within_seconds}
    assert late == {}, f"accounts not written again within {within_seconds} s of the fault: {late}"
    stalled = {account: round(gap, 2) for account, gap in gaps.items() if gap > steady_gap_seconds}
    assert stalled == {}, f"accounts that went longer than {steady_gap_seconds} s without a write: {stalled}"
    # Steadily means something only over a tail several gaps long.
    tail = report.ended_at - since - max(firsts.values())
    assert tail >= 2 * steady_gap_seconds, f"the workload ended {tail:.1f} s after the bank recovered: too soon to tell"


"""What a fault test asks of its workload's report (tests/e2e/workload.py): recovered within the fault's bound, then
steady to the end. Each broken bank below must fail it; the healthy ones must pass."""
import pytest

from client.check import Event, Report
from tests.e2e.workload import assert_served_to_the_end

FAULT_AT, ENDED_AT = 100.0, 120.0


def report_of(writes):
    """A report whose acknowledged writes are {account: [seconds after the fault]}."""
    events = [Event("deposit", (account,), 100, key=f"{account}-{at}", outcome="ok", finished_at=FAULT_AT + at)
              for account, times in writes.items() for at in times]
    return Report(events, {}, dict.fromkeys(writes, 0), ENDED_AT - FAULT_AT, [], ended_at=ENDED_AT,
                  written=list(writes))


def every(step, start, end):
    return [start + step * i for i in range(int((end - start) / step) + 1)]


def test_a_bank_that_stalls_then_serves_steadily_passes_even_when_a_write_landed_just_after_the_fault():
    # Account a was written 0.05 s after the fault (in flight), then the stall: recovery is counted from its end.
    assert_served_to_the_end(report_of({"a": [0.05, *every(0.5, 5.5, 20)], "b": every(0.5, 5.6, 20)}),
                             FAULT_AT, within_seconds=10, steady_gap_seconds=3)


@pytest.mark.parametrize("writes, complaint", [
    ({"a": every(0.5, 1, 20), "b": every(0.5, 1, 12)}, "no write in the last"),          # stops for good
    ({"a": every(0.5, 1, 20), "b": [*every(0.5, 1, 8), *every(0.5, 12, 20)]}, "past 10 s"),  # stalls anew
    ({"a": every(0.5, 1, 20), "b": every(0.5, 11, 20)}, "past 10 s"),                    # back too late
    ({"a": every(0.5, 1, 20), "b": every(0.5, 9, 16.5)}, "no write in the last"),        # stops near the end
])
def test_a_bank_that_does_not_serve_every_account_steadily_to_the_end_fails(writes, complaint):
    with pytest.raises(AssertionError, match=complaint):
        assert_served_to_the_end(report_of(writes), FAULT_AT, within_seconds=10, steady_gap_seconds=3)


def test_a_run_that_ends_too_soon_after_the_recovery_tells_nothing():
    with pytest.raises(AssertionError, match="too soon to tell"):
        assert_served_to_the_end(report_of({"a": every(0.5, 16, 20)}), FAULT_AT, within_seconds=17,
                                 steady_gap_seconds=3)

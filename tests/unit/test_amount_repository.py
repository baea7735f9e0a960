"""The commit's own resending: an unknown outcome is sent again past an etcd election, and not forever."""
import pytest

from business.application.ports import DataUnavailable, Lease, LeasedWrite
from business.infra.amount_repository import HttpAmountRepository
from tests.helpers import FakeClock


class FlakyDataServer:
    """A data client whose first `failures` commits get no answer."""

    business_id = "b1"

    def __init__(self, failures):
        self.failures, self.sent = failures, []

    def call(self, method, path, body=None, params=None, server_wait=0.0, resend=True):
        self.sent.append((path, resend))
        if len(self.sent) <= self.failures:
            raise DataUnavailable("no answer")
        return {"replayed": len(self.sent) > 1, "results": [op["result"] for op in body["operations"]]}


def repository(data, clock):
    return HttpAmountRepository(data, resend_seconds=3.0, clock=clock, sleep=clock.advance)


WRITES = {"acc": LeasedWrite(500, Lease("acc", 7, 400))}
OPERATIONS = [{"id": "op-1", "request": "deposit acc - 100", "result": {"balance": 500}, "keyed": False}]


def test_a_commit_without_an_answer_is_sent_again_until_one_comes():
    data, clock, resends = FlakyDataServer(failures=4), FakeClock(), []
    committed = repository(data, clock).commit(WRITES, OPERATIONS, on_resend=lambda: resends.append(clock.now))
    assert committed.results == [{"balance": 500}] and len(data.sent) == 5
    # The caller hears once, at the first unanswered attempt, that the commit goes on a while.
    assert resends == [1000]
    # Never resent inside one call: each resending is the repository's own, after a pause that grows.
    assert all(resend is False for _, resend in data.sent) and clock.now - 1000 == pytest.approx(0.05 + 0.1 + 0.2 + 0.4)


def test_a_commit_that_stays_unanswered_past_its_window_is_unavailable():
    data, clock = FlakyDataServer(failures=100), FakeClock()
    with pytest.raises(DataUnavailable):
        repository(data, clock).commit(WRITES, OPERATIONS)
    assert clock.now - 1000 <= 3.0 and len(data.sent) < 12


def test_a_commit_with_nothing_to_make_it_idempotent_is_never_sent_again():
    data, resends = FlakyDataServer(failures=1), []
    with pytest.raises(DataUnavailable):
        repository(data, FakeClock()).commit(WRITES, [], on_resend=lambda: resends.append(True))
    assert len(data.sent) == 1 and resends == []

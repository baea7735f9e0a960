"""QueueService on the fakes: lock cycles shared by the operations waiting, bounds, backoff, and what becomes of an
operation whose commit fails, is sent again or is answered twice."""
import threading

import pytest

from business.application.bank_service import BankService
from business.application.errors import InsufficientFunds, ServiceUnavailable
from business.application.ports import (
    AccountLocked,
    CommitResult,
    DataStoreFull,
    DataUnavailable,
    Lease,
    LeasedWrite,
    LeaseLost,
)
from business.application.queue_service import QueueService
from business.infra.amount_repository import HttpAmountRepository
from shared.money import parse_cents
from tests.helpers import FakeClock, InThread
from tests.unit.fakes import FakeAccounts, FakeAmounts, FakeDataServer, FakeHistory, FakeLocks
from tests.unit.services import CLIENT, Harness, balance_or_refusal


def test_waiting_operations_share_one_lock_cycle_in_arrival_order_each_with_its_own_result():
    harness = Harness()
    bank = harness.bank
    first, *boxes = harness.behind_a_held_cycle("acc", (bank.deposit, "acc", 1000, CLIENT), [
        (bank.withdraw, "acc", 500, CLIENT), (bank.withdraw, "acc", 10_000, CLIENT), (bank.deposit, "acc", 100, CLIENT),
        (bank.withdraw, "acc", 600, CLIENT)])

    assert first.result().balance_cents == 1000
    assert [balance_or_refusal(box) for box in boxes] == [500, InsufficientFunds, 600, 0]
    assert harness.server.acquired == ["acc", "acc"]          # two lock cycles for five operations
    assert harness.server.commits == [{"acc": 1000}, {"acc": 0}]


def test_operations_on_different_accounts_waiting_together_share_one_lock_request_and_one_commit():
    harness = Harness({"a": 100, "b": 100, "c": 5})
    bank = harness.bank
    deposit_b, transfer, withdrawal, balance = harness.behind_a_held_cycle_on_many_accounts([
        (bank.deposit, "b", 7, CLIENT), (bank.transfer, "a", "c", 40, CLIENT), (bank.withdraw, "a", 70, CLIENT),
        (bank.balance, "c", CLIENT)])
    assert deposit_b.result().balance_cents == 107
    assert (transfer.result().balance_cents, transfer.result().target_balance_cents) == (60, 45)
    assert withdrawal.outcome() is InsufficientFunds
    assert balance.result().balance_cents == 45
    assert harness.server.lock_requests == [("lead",), ("a", "b", "c")]
    assert harness.server.commits == [{"lead": 1}, {"a": 60, "b": 107, "c": 45}]
    assert harness.server.leases == {}


def test_an_account_held_elsewhere_sets_aside_only_the_operations_that_touch_it():
    harness = Harness({"a": 100, "free": 0, "held": 0})
    harness.server.locked_by_others["held"] = None
    bank = harness.bank
    to_held, after_it, elsewhere = harness.behind_a_held_cycle_on_many_accounts([
        (bank.transfer, "a", "held", 100, CLIENT), (bank.withdraw, "a", 100, CLIENT),
        (bank.deposit, "free", 3, CLIENT)])
    assert elsewhere.result().balance_cents == 3
    # The withdrawal arrived after the transfer on the same account: it waits with it rather than overtake it.
    assert to_held.outcome() is ServiceUnavailable and after_it.outcome() is ServiceUnavailable
    assert to_held.error().code == after_it.error().code == "account_busy"
    assert harness.server.accounts == {"a": 100, "free": 3, "held": 0, "lead": 1} and harness.server.leases == {}


def test_the_queue_is_bounded_and_refuses_at_once_past_its_limit():
    harness = Harness({"acc": 0}, queue_limit=2)
    deposit = (harness.bank.deposit, "acc", 1, CLIENT)

    def one_more_is_refused():
        with pytest.raises(ServiceUnavailable) as refused:
            harness.bank.deposit("acc", 1, CLIENT)
        assert refused.value.code == "queue_full" and refused.value.retry_after >= 1

    boxes = harness.behind_a_held_cycle("acc", deposit, [deposit] * 2, one_more_is_refused)
    assert all(box.error() is None for box in boxes)
    assert harness.server.accounts["acc"] == 3


def test_batches_are_capped_at_the_batch_limit():
    harness = Harness({"acc": 0}, batch_limit=2)
    deposit = (harness.bank.deposit, "acc", 1, CLIENT)
    harness.behind_a_held_cycle("acc", deposit, [deposit] * 5)
    assert len(harness.server.commits) == 4 and harness.server.accounts["acc"] == 6


def test_a_busy_account_is_retried_with_growing_jittered_backoff():
    harness = Harness({"acc": 100})
    harness.server.locked_by_others["acc"] = 4
    assert harness.bank.deposit("acc", 1, CLIENT).balance_cents == 101
    # Jitter fixed at the middle of its range: each pause is the backoff itself, doubling from the first.
    assert harness.sleeps == pytest.approx([0.002, 0.004, 0.008, 0.016])


def test_an_account_busy_past_lock_wait_is_503_account_busy_and_changes_nothing():
    harness = Harness({"acc": 100}, lock_wait=2.0)
    harness.server.locked_by_others["acc"] = None
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("acc", 1, CLIENT)
    assert refused.value.code == "account_busy"
    assert 2.0 <= sum(harness.sleeps) < 2.1 and max(harness.sleeps) <= 0.05
    assert harness.server.accounts == {"acc": 100}


def test_a_transfer_while_the_second_account_stays_busy_holds_neither_and_changes_nothing():
    harness = Harness({"a": 100, "b": 100})
    harness.server.locked_by_others["b"] = None
    with pytest.raises(ServiceUnavailable):
        harness.bank.transfer("a", "b", 30, CLIENT)
    assert harness.server.accounts == {"a": 100, "b": 100} and harness.server.leases == {}
    assert harness.server.acquired == [] and len(harness.server.lock_requests) > 1


def test_a_lease_lost_before_the_commit_is_503_account_busy_every_lease_is_given_back_and_a_retry_goes_through():
    harness = Harness({"a": 100, "b": 0})
    harness.server.fail_commit = LeaseLost
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.transfer("a", "b", 50, CLIENT, "key-1")
    assert refused.value.code == "account_busy" and "nothing was applied" in refused.value.message
    # The service gave back both leases itself (the refusal took none), and recorded nothing under the key.
    assert sorted(harness.server.released) == ["a", "b"] and harness.server.leases == {}
    retried = harness.bank.transfer("a", "b", 50, CLIENT, "key-1")
    assert (retried.balance_cents, retried.target_balance_cents, retried.replayed) == (50, 50, False)
    assert harness.server.accounts == {"a": 50, "b": 50} and len(harness.server.commits) == 1


def test_a_full_idempotency_store_is_503_applies_nothing_and_leaves_no_lock_while_bare_writes_go_on():
    harness = Harness({"a": 100})
    harness.server.key_limit = 1
    harness.bank.deposit("a", 1, CLIENT, "key-1")
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("a", 1, CLIENT, "key-2")
    assert refused.value.code == "idempotency_store_full" and refused.value.retry_after == 60
    assert harness.server.accounts == {"a": 101} and harness.server.leases == {}
    assert harness.bank.deposit("a", 1, CLIENT).balance_cents == 102


def test_a_data_server_unavailable_for_the_lock_is_503_data_unavailable_and_nothing_is_applied():
    harness = Harness({"a": 100})
    harness.server.down = True
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("a", 1, CLIENT, "key-1")
    assert refused.value.code == "data_unavailable" and "nothing was applied" in refused.value.message
    harness.server.down = False
    assert harness.bank.deposit("a", 1, CLIENT, "key-1").balance_cents == 101 and harness.server.accounts == {"a": 101}


@pytest.mark.parametrize("applied", [True, False], ids=["applied, its answer lost", "never applied"])
def test_a_commit_of_unknown_outcome_is_503_and_a_retry_with_the_key_learns_it_and_applies_it_once(applied):
    harness = Harness({"a": 100})
    if applied:
        harness.server.lose_answers = 1
    else:
        harness.server.fail_commit = DataUnavailable
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("a", 5, CLIENT, "key-1")
    # Not "nothing was applied": the service cannot know, and says how to learn it.
    assert refused.value.code == "data_unavailable" and "same Idempotency-Key" in refused.value.message
    # Leases under an unknown outcome are left to end with LOCK_TTL.
    harness.server.expire_leases()
    retried = harness.bank.deposit("a", 5, CLIENT, "key-1")
    assert (retried.balance_cents, retried.replayed) == (105, applied)
    assert harness.server.accounts == {"a": 105} and len(harness.server.commits) == 1


class AnswerLosingDataClient:
    """The data server's /commit as HttpAmountRepository calls it, served by the fake data server; the answers to
    the first `lost` commits are lost once they were applied (a timeout, a connection dropped)."""

    business_id = "b1"

    def __init__(self, server, lost):
        self.amounts, self.lost, self.answers = FakeAmounts(server), lost, []

    def call(self, method, path, body=None, params=None, server_wait=0.0, resend=True):
        assert (method, path, resend) == ("POST", "/commit/b1", False)
        writes = {write["account"]: LeasedWrite(parse_cents(write["amount"]), Lease(write["account"], write["token"],
                                                                                     None), write.get("owner"))
                  for write in body["writes"]}
        release = [Lease(held["account"], held["token"], None) for held in body["release"]]
        entries = [{**entry, "cents": parse_cents(entry["amount"]), "balance": parse_cents(entry["balance"])}
                   for entry in body["entries"]]
        answer = self.amounts.commit(writes, body["operations"], release, entries)
        self.answers.append(answer)
        if len(self.answers) <= self.lost:
            raise DataUnavailable("no answer")
        return {"replayed": answer.replayed, "results": answer.results}


def test_a_commit_whose_answer_was_lost_is_sent_again_replayed_and_the_first_result_reported_once_applied():
    server, clock = FakeDataServer({"a": 100, "b": 0}), FakeClock()
    data = AnswerLosingDataClient(server, lost=2)
    amounts = HttpAmountRepository(data, clock=clock, sleep=clock.advance)
    bank = BankService(QueueService(FakeLocks(server), amounts, 2.0, 100, 50), FakeHistory(server),
                       FakeAccounts(server), 1_000_000)
    receipt = bank.transfer("a", "b", 30, CLIENT, "key-1")
    # The first attempt was applied; the two sent after it were answered as replays of it, with its results.
    first = CommitResult(False, [{"balance": 70, "target_balance": 30}])
    assert data.answers == [first, CommitResult(True, first.results), CommitResult(True, first.results)]
    # The client hears the first result, once applied: no second debit, no second history entry, no lease left.
    assert (receipt.balance_cents, receipt.target_balance_cents, receipt.replayed) == (70, 30, False)
    assert server.accounts == {"a": 70, "b": 30} and len(server.commits) == 1 and server.leases == {}
    assert [len(server.history[account]) for account in ("a", "b")] == [1, 1]
    # The client asking again with its key is told the same, as a replay.
    again = bank.transfer("a", "b", 30, CLIENT, "key-1")
    assert (again.balance_cents, again.replayed) == (70, True) and server.accounts == {"a": 70, "b": 30}


class ResendingAmounts(FakeAmounts):
    """As the data server whose answer to the first commit on `account` is lost: sent again once `finish` is set."""

    def __init__(self, server, account):
        super().__init__(server)
        self.account, self.resending, self.finish = account, threading.Event(), threading.Event()

    def commit(self, writes, operations, release=(), entries=(), on_resend=lambda: None, holds=()):
        if self.account in writes and not self.resending.is_set():
            on_resend()
            self.resending.set()
            assert self.finish.wait(10)
        return super().commit(writes, operations, release, entries, on_resend, holds)


def test_while_a_commit_is_sent_again_the_operations_behind_it_go_on_and_it_still_gets_its_answer():
    server = FakeDataServer({"slow": 100, "other": 5})
    amounts = ResendingAmounts(server, "slow")
    bank = BankService(QueueService(FakeLocks(server), amounts, 2.0, 100, 50), FakeHistory(server),
                       FakeAccounts(server), 1_000_000)
    resent = InThread(bank.deposit, "slow", 1, CLIENT)
    assert amounts.resending.wait(10)
    # Without the hand-over these would wait behind the resending commit, here for ever (10 s).
    assert bank.deposit("other", 2, CLIENT).balance_cents == 7 and bank.balance("other", CLIENT).balance_cents == 7
    amounts.finish.set()
    assert resent.result().balance_cents == 101
    assert server.accounts == {"slow": 101, "other": 7} and server.leases == {}


class MeetingAmounts(FakeAmounts):
    """As a data server that answers balance reads only once `readers` of them are in flight together."""

    def __init__(self, server, readers):
        super().__init__(server)
        self.together = threading.Barrier(readers, timeout=5)

    def get(self, account, wait=0.0):
        self.together.wait()
        return super().get(account, wait)


def test_balances_whose_turn_comes_together_are_read_at_once_each_by_its_caller_and_the_line_goes_on():
    harness = Harness({"a": 1, "b": 2, "c": 3, "gate": 0}, amounts=lambda server: MeetingAmounts(server, 3))
    gate = harness.server.gate = threading.Event()
    leader = InThread(harness.bank.deposit, "gate", 1, CLIENT)
    assert harness.server.acquire_entered.wait(10)
    reads = [InThread(harness.bank.balance, account, CLIENT) for account in ("a", "b", "c")]
    for account in ("a", "b", "c"):
        harness.wait_pending(account, 1)
    gate.set()
    assert leader.result().balance_cents == 1
    # One after another, the first read would have waited for the other two for ever (5 s): BrokenBarrierError.
    assert [read.result().balance_cents for read in reads] == [1, 2, 3]
    assert sorted(harness.server.reads) == ["a", "b", "c"]


def test_a_full_data_store_is_503_store_full_applies_nothing_and_leaves_no_lock_while_balances_are_read():
    harness = Harness({"a": 100, "b": 5})
    harness.server.full = True
    for write in (lambda: harness.bank.deposit("a", 1, CLIENT, "key-1"),
                  lambda: harness.bank.transfer("a", "b", 1, CLIENT)):
        with pytest.raises(ServiceUnavailable) as refused:
            write()
        assert refused.value.code == "store_full" and refused.value.retry_after == 30
    assert harness.bank.balance("a", CLIENT).balance_cents == 100
    # Full between the lock and the commit: the lock is given back.
    harness.server.full = False
    harness.server.fail_commit = lambda message: DataStoreFull(30)
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("a", 1, CLIENT, "key-1")
    assert refused.value.code == "store_full"
    assert harness.server.accounts == {"a": 100, "b": 5} and harness.server.leases == {}
    assert harness.bank.deposit("a", 1, CLIENT, "key-1").replayed is False


def test_a_bug_in_the_lock_cycle_reaches_every_waiter_and_hangs_no_one():
    harness = Harness({"acc": 0})
    deposit = (harness.bank.deposit, "acc", 1, CLIENT)
    boxes = harness.behind_a_held_cycle("acc", deposit, [deposit] * 3,
                                        lambda: setattr(harness.server, "fail_commit", RuntimeError))
    # The leader's cycle hits the bug; its lease is never given back, so the next cycle finds the account held.
    assert [type(box.error()) for box in boxes] == [RuntimeError] + [ServiceUnavailable] * 3
    assert [box.error().code for box in boxes[1:]] == ["account_busy"] * 3
    assert harness.queues.pending("acc") == 0 and harness.server.accounts == {"acc": 0}


class LocksNamingAnotherAccount(FakeLocks):
    def acquire_all(self, accounts, lookup=(), wait=0.0):
        raise AccountLocked("somewhere-else", 0.05)


def test_a_refusal_naming_an_account_outside_the_batch_is_waited_out_not_spun_on():
    harness = Harness({"a": 100}, lock_wait=1.0, locks=LocksNamingAnotherAccount)
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("a", 1, CLIENT)
    assert refused.value.code == "account_busy" and 1.0 <= sum(harness.sleeps) < 1.1

"""BankService and QueueService on in-memory fakes: batching, refusals, bounds, backoff, idempotency."""
import threading
import time

import pytest

from business.application.bank_service import BankService
from business.application.errors import (AccountNotFound, IdempotencyConflict, InsufficientFunds, InvalidRequest,
                                         ServiceUnavailable)
from business.application.queue_service import QueueService
from business.application.ports import AccountLocked, DataStoreFull, DataUnavailable, LeaseLost
from tests.helpers import FakeClock
from tests.unit.fakes import FakeAmounts, FakeDataServer, FakeHistory, FakeLocks


class Harness:
    def __init__(self, accounts=None, queue_limit=100, batch_limit=50, lock_wait=2.0, locks=FakeLocks,
                 amounts=FakeAmounts):
        self.server = FakeDataServer(accounts)
        self.clock = FakeClock()
        self.sleeps = []
        self.queues = QueueService(locks(self.server), amounts(self.server), lock_wait, queue_limit,
                                   batch_limit, clock=self.clock, sleep=self._sleep, jitter=lambda: 0.5)
        self.bank = BankService(self.queues, FakeHistory(self.server), max_amount_cents=1_000_000)

    def _sleep(self, seconds):
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def in_thread(self, function, *args):
        """Run function in a real thread; the returned dict gets its result or error."""
        box = {}

        def run():
            try:
                box["result"] = function(*args)
            except Exception as error:
                box["error"] = error

        box["thread"] = threading.Thread(target=run)
        box["thread"].start()
        return box

    def behind_a_held_cycle(self, account, leader, followers, while_held=lambda: None):
        """Run leader and hold its lock cycle at the fake's gate; queue followers behind it one by one, in order;
        call while_held; open the gate. Each call is (function, *args); return their finished boxes, leader first."""
        gate = self.server.gate = threading.Event()
        boxes = [self.in_thread(*leader)]
        assert self.server.acquire_entered.wait(10)
        for position, follower in enumerate(followers, start=1):
            boxes.append(self.in_thread(*follower))
            self.wait_pending(account, position)
        while_held()
        gate.set()
        for box in boxes:
            box["thread"].join(10)
            assert not box["thread"].is_alive()
        return boxes

    def wait_pending(self, account, count):
        deadline = time.monotonic() + 10
        while self.queues.pending(account) != count:
            assert time.monotonic() < deadline, f"{count} operations never queued on {account}"
            time.sleep(0.001)


def test_a_first_deposit_creates_the_account():
    harness = Harness()
    receipt = harness.bank.deposit("alice", 1050, "client")
    assert receipt.balance_cents == 1050 and receipt.amount_cents == 1050
    assert harness.bank.balance("alice").balance_cents == 1050


def test_an_overdraft_is_refused_and_changes_nothing():
    harness = Harness({"alice": 500})
    with pytest.raises(InsufficientFunds):
        harness.bank.withdraw("alice", 501, "client")
    assert harness.server.accounts == {"alice": 500} and harness.server.leases == {}


def test_unknown_accounts_are_not_found_and_leave_no_lock():
    harness = Harness()
    with pytest.raises(AccountNotFound):
        harness.bank.withdraw("ghost", 1, "client")
    with pytest.raises(AccountNotFound):
        harness.bank.balance("ghost")
    assert "ghost" not in harness.server.accounts and harness.server.leases == {}


@pytest.mark.parametrize("amount", [0, 1_000_001])
def test_amounts_out_of_range_are_invalid(amount):
    with pytest.raises(InvalidRequest):
        Harness().bank.deposit("alice", amount, "client")


def test_a_transfer_to_the_same_account_is_invalid():
    with pytest.raises(InvalidRequest) as refused:
        Harness({"a": 100}).bank.transfer("a", "a", 1, "client")
    assert refused.value.code == "same_account"


def test_waiting_operations_share_one_lock_cycle_in_arrival_order_each_with_its_own_result():
    harness = Harness()
    bank = harness.bank
    first, *boxes = harness.behind_a_held_cycle("acc", (bank.deposit, "acc", 1000, "c"), [
        (bank.withdraw, "acc", 500, "c"), (bank.withdraw, "acc", 10_000, "c"), (bank.deposit, "acc", 100, "c"),
        (bank.withdraw, "acc", 600, "c")])

    assert first["result"].balance_cents == 1000
    assert [b.get("result").balance_cents if "result" in b else type(b["error"]) for b in boxes] == \
        [500, InsufficientFunds, 600, 0]
    assert harness.server.acquired == ["acc", "acc"]          # two lock cycles for five operations
    assert harness.server.commits == [{"acc": 1000}, {"acc": 0}]


def behind_a_held_cycle_on_many_accounts(harness, followers):
    """Hold a lock cycle on "lead"; queue followers (function, account, *args) one by one; open the gate."""
    gate = harness.server.gate = threading.Event()
    leader = harness.in_thread(harness.bank.deposit, "lead", 1, "c")
    assert harness.server.acquire_entered.wait(10)
    boxes = []
    for function, account, *args in followers:
        boxes.append(harness.in_thread(function, account, *args))
        harness.wait_pending(account, sum(1 for _, other, *_ in followers[:len(boxes)] if other == account))
    gate.set()
    for box in [leader, *boxes]:
        box["thread"].join(10)
        assert not box["thread"].is_alive()
    return boxes


def outcome(box):
    return box["result"] if "result" in box else type(box["error"])


def test_operations_on_different_accounts_waiting_together_share_one_lock_request_and_one_commit():
    harness = Harness({"a": 100, "b": 100, "c": 5})
    bank = harness.bank
    deposit_b, transfer, withdrawal, balance = behind_a_held_cycle_on_many_accounts(harness, [
        (bank.deposit, "b", 7, "c"), (bank.transfer, "a", "c", 40, "c"), (bank.withdraw, "a", 70, "c"),
        (bank.balance, "c")])
    assert deposit_b["result"].balance_cents == 107
    assert (transfer["result"].balance_cents, transfer["result"].target_balance_cents) == (60, 45)
    assert outcome(withdrawal) is InsufficientFunds
    assert balance["result"].balance_cents == 45
    assert harness.server.lock_requests == [("lead",), ("a", "b", "c")]
    assert harness.server.commits == [{"lead": 1}, {"a": 60, "b": 107, "c": 45}]
    assert harness.server.leases == {}


def test_an_account_held_elsewhere_sets_aside_only_the_operations_that_touch_it():
    harness = Harness({"a": 100, "free": 0, "held": 0})
    harness.server.locked_by_others["held"] = None
    bank = harness.bank
    to_held, after_it, elsewhere = behind_a_held_cycle_on_many_accounts(harness, [
        (bank.transfer, "a", "held", 100, "c"), (bank.withdraw, "a", 100, "c"), (bank.deposit, "free", 3, "c")])
    assert elsewhere["result"].balance_cents == 3
    # The withdrawal arrived after the transfer on the same account: it waits with it rather than overtake it.
    assert outcome(to_held) is ServiceUnavailable and outcome(after_it) is ServiceUnavailable
    assert to_held["error"].code == after_it["error"].code == "account_busy"
    assert harness.server.accounts == {"a": 100, "free": 3, "held": 0, "lead": 1} and harness.server.leases == {}


def test_the_queue_is_bounded_and_refuses_at_once_past_its_limit():
    harness = Harness({"acc": 0}, queue_limit=2)
    deposit = (harness.bank.deposit, "acc", 1, "c")

    def one_more_is_refused():
        with pytest.raises(ServiceUnavailable) as refused:
            harness.bank.deposit("acc", 1, "c")
        assert refused.value.code == "queue_full" and refused.value.retry_after >= 1

    boxes = harness.behind_a_held_cycle("acc", deposit, [deposit] * 2, one_more_is_refused)
    assert all("result" in box for box in boxes)
    assert harness.server.accounts["acc"] == 3


def test_batches_are_capped_at_the_batch_limit():
    harness = Harness({"acc": 0}, batch_limit=2)
    deposit = (harness.bank.deposit, "acc", 1, "c")
    harness.behind_a_held_cycle("acc", deposit, [deposit] * 5)
    assert len(harness.server.commits) == 4 and harness.server.accounts["acc"] == 6


def test_a_busy_account_is_retried_with_growing_jittered_backoff():
    harness = Harness({"acc": 100})
    harness.server.locked_by_others["acc"] = 4
    assert harness.bank.deposit("acc", 1, "c").balance_cents == 101
    # Jitter fixed at the middle of its range: each pause is the backoff itself, doubling from the first.
    assert harness.sleeps == pytest.approx([0.002, 0.004, 0.008, 0.016])


def test_an_account_busy_past_lock_wait_is_503_account_busy_and_changes_nothing():
    harness = Harness({"acc": 100}, lock_wait=2.0)
    harness.server.locked_by_others["acc"] = None
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("acc", 1, "c")
    assert refused.value.code == "account_busy"
    assert 2.0 <= sum(harness.sleeps) < 2.1 and max(harness.sleeps) <= 0.05
    assert harness.server.accounts == {"acc": 100}


def test_a_transfer_locks_both_accounts_in_one_request_and_moves_the_money():
    harness = Harness({"a": 100, "b": 100})
    receipt = harness.bank.transfer("b", "a", 30, "c")
    assert (receipt.balance_cents, receipt.target_balance_cents) == (70, 130)
    assert harness.server.lock_requests == [("a", "b")]
    assert harness.server.accounts == {"a": 130, "b": 70} and harness.server.leases == {}


def test_a_transfer_while_the_second_account_stays_busy_holds_neither_and_changes_nothing():
    harness = Harness({"a": 100, "b": 100})
    harness.server.locked_by_others["b"] = None
    with pytest.raises(ServiceUnavailable):
        harness.bank.transfer("a", "b", 30, "c")
    assert harness.server.accounts == {"a": 100, "b": 100} and harness.server.leases == {}
    assert harness.server.acquired == [] and len(harness.server.lock_requests) > 1


@pytest.mark.parametrize("origin, target, error", [("a", "ghost", AccountNotFound), ("a", "b", InsufficientFunds)])
def test_a_refused_transfer_changes_neither_account(origin, target, error):
    harness = Harness({"a": 10, "b": 0})
    with pytest.raises(error):
        harness.bank.transfer(origin, target, 11, "c")
    assert harness.server.accounts == {"a": 10, "b": 0} and harness.server.leases == {}


def test_a_lease_lost_before_the_commit_is_503_and_nothing_is_applied():
    harness = Harness({"a": 100, "b": 0})
    harness.server.fail_commit = LeaseLost
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.transfer("a", "b", 50, "c")
    assert refused.value.code == "account_busy"
    assert harness.server.accounts == {"a": 100, "b": 0} and harness.server.leases == {}


def test_a_full_idempotency_store_is_503_applies_nothing_and_leaves_no_lock_while_bare_writes_go_on():
    harness = Harness({"a": 100})
    harness.server.key_limit = 1
    harness.bank.deposit("a", 1, "c", "key-1")
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("a", 1, "c", "key-2")
    assert refused.value.code == "idempotency_store_full" and refused.value.retry_after == 60
    assert harness.server.accounts == {"a": 101} and harness.server.leases == {}
    assert harness.bank.deposit("a", 1, "c").balance_cents == 102


@pytest.mark.parametrize("where", ["acquire", "commit"])
def test_an_unavailable_data_server_is_503_data_unavailable(where):
    harness = Harness({"a": 100})
    if where == "acquire":
        harness.server.down = True
    else:
        harness.server.fail_commit = DataUnavailable
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("a", 1, "c")
    assert refused.value.code == "data_unavailable"
    assert harness.server.accounts == {"a": 100}


class ResendingAmounts(FakeAmounts):
    """As the data server whose answer to the first commit on `account` is lost: sent again once `finish` is set."""

    def __init__(self, server, account):
        super().__init__(server)
        self.account, self.resending, self.finish = account, threading.Event(), threading.Event()

    def commit(self, writes, operations, release=(), entries=(), on_resend=lambda: None):
        if self.account in writes and not self.resending.is_set():
            on_resend()
            self.resending.set()
            assert self.finish.wait(10)
        return super().commit(writes, operations, release, entries, on_resend)


def test_while_a_commit_is_sent_again_the_operations_behind_it_go_on_and_it_still_gets_its_answer():
    server = FakeDataServer({"slow": 100, "other": 5})
    amounts = ResendingAmounts(server, "slow")
    bank = BankService(QueueService(FakeLocks(server), amounts, 2.0, 100, 50), FakeHistory(server), 1_000_000)
    resent = threading.Thread(target=lambda: bank.deposit("slow", 1, "c"))
    resent.start()
    assert amounts.resending.wait(10)
    # Without the hand-over these would wait behind the resending commit, here for ever (10 s).
    assert bank.deposit("other", 2, "c").balance_cents == 7 and bank.balance("other").balance_cents == 7
    amounts.finish.set()
    resent.join(10)
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
    leader = harness.in_thread(harness.bank.deposit, "gate", 1, "c")
    assert harness.server.acquire_entered.wait(10)
    reads = [harness.in_thread(harness.bank.balance, account) for account in ("a", "b", "c")]
    for account in ("a", "b", "c"):
        harness.wait_pending(account, 1)
    gate.set()
    for box in (leader, *reads):
        box["thread"].join(10)
    # One after another, the first read would have waited for the other two for ever (5 s): BrokenBarrierError.
    assert [box["result"].balance_cents for box in reads] == [1, 2, 3]
    assert sorted(harness.server.reads) == ["a", "b", "c"]


def test_a_full_data_store_is_503_store_full_applies_nothing_and_leaves_no_lock_while_balances_are_read():
    harness = Harness({"a": 100, "b": 5})
    harness.server.full = True
    for write in (lambda: harness.bank.deposit("a", 1, "c", "key-1"), lambda: harness.bank.transfer("a", "b", 1, "c")):
        with pytest.raises(ServiceUnavailable) as refused:
            write()
        assert refused.value.code == "store_full" and refused.value.retry_after == 30
    assert harness.bank.balance("a").balance_cents == 100
    # Full between the lock and the commit: the lock is given back.
    harness.server.full = False
    harness.server.fail_commit = lambda message: DataStoreFull(30)
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("a", 1, "c", "key-1")
    assert refused.value.code == "store_full"
    assert harness.server.accounts == {"a": 100, "b": 5} and harness.server.leases == {}
    assert harness.bank.deposit("a", 1, "c", "key-1").replayed is False


def test_a_retry_with_the_same_key_returns_the_first_result_and_applies_nothing():
    harness = Harness({"a": 100})
    first = harness.bank.withdraw("a", 40, "client", "key-1")
    harness.bank.deposit("a", 5, "client")
    again = harness.bank.withdraw("a", 40, "client", "key-1")
    assert (first.balance_cents, first.replayed) == (60, False)
    assert (again.balance_cents, again.replayed) == (60, True)
    assert harness.server.accounts["a"] == 65


def test_keys_belong_to_their_client():
    harness = Harness({"a": 100})
    harness.bank.withdraw("a", 40, "alice", "key-1")
    assert harness.bank.withdraw("a", 40, "bob", "key-1").replayed is False
    assert harness.server.accounts["a"] == 20


def test_the_same_key_with_another_request_is_a_conflict():
    harness = Harness({"a": 100})
    harness.bank.withdraw("a", 40, "client", "key-1")
    with pytest.raises(IdempotencyConflict):
        harness.bank.withdraw("a", 41, "client", "key-1")
    assert harness.server.accounts["a"] == 60


def test_the_same_key_twice_in_one_batch_is_applied_once():
    harness = Harness({"a": 100})
    _, *twins = harness.behind_a_held_cycle("a", (harness.bank.deposit, "a", 1, "c"),
                                             [(harness.bank.withdraw, "a", 10, "c", "same-key")] * 2)
    assert sorted(box["result"].replayed for box in twins) == [False, True]
    assert harness.server.accounts["a"] == 91


def test_a_bug_in_the_lock_cycle_reaches_every_waiter_and_hangs_no_one():
    harness = Harness({"acc": 0})
    deposit = (harness.bank.deposit, "acc", 1, "c")
    boxes = harness.behind_a_held_cycle("acc", deposit, [deposit] * 3,
                                        lambda: setattr(harness.server, "fail_commit", RuntimeError))
    # The leader's cycle hits the bug; its lease is never given back, so the next cycle finds the account held.
    assert [type(box.get("error")) for box in boxes] == [RuntimeError] + [ServiceUnavailable] * 3
    assert [box["error"].code for box in boxes[1:]] == ["account_busy"] * 3
    assert harness.queues.pending("acc") == 0 and harness.server.accounts == {"acc": 0}


def test_a_refusal_under_a_key_is_final_even_after_the_funds_arrive():
    harness = Harness({"a": 100})
    with pytest.raises(InsufficientFunds):
        harness.bank.withdraw("a", 200, "client", "key-r")
    harness.bank.deposit("a", 500, "client")
    with pytest.raises(InsufficientFunds):
        harness.bank.withdraw("a", 200, "client", "key-r")
    assert harness.server.accounts["a"] == 600


def test_a_keyed_operation_on_a_missing_account_stays_refused_after_the_account_is_created():
    harness = Harness()
    with pytest.raises(AccountNotFound):
        harness.bank.withdraw("ghost", 1, "client", "key-g")
    harness.bank.deposit("ghost", 5, "client")
    with pytest.raises(AccountNotFound):
        harness.bank.withdraw("ghost", 1, "client", "key-g")
    assert harness.server.accounts["ghost"] == 5 and harness.server.leases == {}


def test_a_refusal_without_a_key_is_not_recorded():
    harness = Harness({"a": 100})
    with pytest.raises(InsufficientFunds):
        harness.bank.withdraw("a", 200, "client")
    assert harness.server.operations == {} and harness.server.commits == []


class LocksNamingAnotherAccount(FakeLocks):
    def acquire_all(self, accounts, lookup=(), wait=0.0):
        raise AccountLocked("somewhere-else", 0.05)


def test_a_refusal_naming_an_account_outside_the_batch_is_waited_out_not_spun_on():
    harness = Harness({"a": 100}, lock_wait=1.0, locks=LocksNamingAnotherAccount)
    with pytest.raises(ServiceUnavailable) as refused:
        harness.bank.deposit("a", 1, "c")
    assert refused.value.code == "account_busy" and 1.0 <= sum(harness.sleeps) < 1.1

"""BankService on the fakes: the bank's rules as a client meets them — amounts, accounts, transfers and
Idempotency-Keys."""
import pytest

from business.application.bank_service import Caller
from business.application.errors import (
    AccountNotFound,
    Forbidden,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
)
from business.application.operations import Operation
from tests.unit.services import CLIENT, Harness


def test_a_first_deposit_creates_the_account():
    harness = Harness()
    receipt = harness.bank.deposit("alice", 1050, CLIENT)
    assert receipt.balance_cents == 1050 and receipt.amount_cents == 1050
    assert harness.bank.balance("alice", CLIENT).balance_cents == 1050


def test_an_overdraft_is_refused_and_changes_nothing():
    harness = Harness({"alice": 500})
    with pytest.raises(InsufficientFunds):
        harness.bank.withdraw("alice", 501, CLIENT)
    assert harness.server.accounts == {"alice": 500} and harness.server.leases == {}


def test_unknown_accounts_are_not_found_and_leave_no_lock():
    harness = Harness()
    with pytest.raises(AccountNotFound):
        harness.bank.withdraw("ghost", 1, CLIENT)
    with pytest.raises(AccountNotFound):
        harness.bank.balance("ghost", CLIENT)
    assert "ghost" not in harness.server.accounts and harness.server.leases == {}


@pytest.mark.parametrize("amount", [0, 1_000_001])
def test_amounts_out_of_range_are_invalid(amount):
    with pytest.raises(InvalidRequest):
        Harness().bank.deposit("alice", amount, CLIENT)


def test_a_transfer_to_the_same_account_is_invalid():
    with pytest.raises(InvalidRequest) as refused:
        Harness({"a": 100}).bank.transfer("a", "a", 1, CLIENT)
    assert refused.value.code == "same_account"


def test_a_transfer_locks_both_accounts_in_one_request_and_moves_the_money():
    harness = Harness({"a": 100, "b": 100})
    receipt = harness.bank.transfer("b", "a", 30, CLIENT)
    assert (receipt.balance_cents, receipt.target_balance_cents) == (70, 130)
    assert harness.server.lock_requests == [("a", "b")]
    assert harness.server.accounts == {"a": 130, "b": 70} and harness.server.leases == {}


@pytest.mark.parametrize("origin, target, error", [("a", "ghost", AccountNotFound), ("a", "b", InsufficientFunds)])
def test_a_refused_transfer_changes_neither_account(origin, target, error):
    harness = Harness({"a": 10, "b": 0})
    with pytest.raises(error):
        harness.bank.transfer(origin, target, 11, CLIENT)
    assert harness.server.accounts == {"a": 10, "b": 0} and harness.server.leases == {}


def test_a_retry_with_the_same_key_returns_the_first_result_and_applies_nothing():
    harness = Harness({"a": 100})
    first = harness.bank.withdraw("a", 40, CLIENT, "key-1")
    harness.bank.deposit("a", 5, CLIENT)
    again = harness.bank.withdraw("a", 40, CLIENT, "key-1")
    assert (first.balance_cents, first.replayed) == (60, False)
    assert (again.balance_cents, again.replayed) == (60, True)
    assert harness.server.accounts["a"] == 65


def test_keys_belong_to_their_client():
    harness = Harness({"a": 100})
    harness.bank.deposit("a", 40, Caller("alice"), "key-1")
    assert harness.bank.deposit("a", 40, Caller("bob"), "key-1").replayed is False
    assert harness.server.accounts["a"] == 180


def test_the_same_key_with_another_request_is_a_conflict():
    harness = Harness({"a": 100})
    harness.bank.withdraw("a", 40, CLIENT, "key-1")
    with pytest.raises(IdempotencyConflict):
        harness.bank.withdraw("a", 41, CLIENT, "key-1")
    assert harness.server.accounts["a"] == 60


def test_the_same_key_twice_in_one_batch_is_applied_once():
    harness = Harness({"a": 100})
    _, *twins = harness.behind_a_held_cycle("a", (harness.bank.deposit, "a", 1, CLIENT),
                                             [(harness.bank.withdraw, "a", 10, CLIENT, "same-key")] * 2)
    assert sorted(box.result().replayed for box in twins) == [False, True]
    assert harness.server.accounts["a"] == 91


def test_a_refusal_under_a_key_is_final_even_after_the_funds_arrive():
    harness = Harness({"a": 100})
    with pytest.raises(InsufficientFunds):
        harness.bank.withdraw("a", 200, CLIENT, "key-r")
    harness.bank.deposit("a", 500, CLIENT)
    with pytest.raises(InsufficientFunds):
        harness.bank.withdraw("a", 200, CLIENT, "key-r")
    assert harness.server.accounts["a"] == 600


def test_a_keyed_operation_on_a_missing_account_stays_refused_after_the_account_is_created():
    harness = Harness()
    with pytest.raises(AccountNotFound):
        harness.bank.withdraw("ghost", 1, CLIENT, "key-g")
    harness.bank.deposit("ghost", 5, CLIENT)
    with pytest.raises(AccountNotFound):
        harness.bank.withdraw("ghost", 1, CLIENT, "key-g")
    assert harness.server.accounts["ghost"] == 5 and harness.server.leases == {}


def test_a_refusal_without_a_key_is_not_recorded():
    harness = Harness({"a": 100})
    with pytest.raises(InsufficientFunds):
        harness.bank.withdraw("a", 200, CLIENT)
    assert harness.server.operations == {} and harness.server.commits == []


def test_an_operator_moves_no_money_even_past_the_service():
    harness = Harness({"a": 100})
    with pytest.raises(Forbidden):
        harness.bank.withdraw("a", 1, Caller("ops", operator=True))
    # The rules refuse it too, should a debit of an operator's ever reach the queue.
    with pytest.raises(AccountNotFound):
        harness.queues.submit(Operation("withdrawal", "a", 1, None, "op-1", None, "ops", operator=True))
    # ... even an operator that shares the owner's name (which settings refuse), and a deposit or an open.
    for kind, account in (("withdrawal", "a"), ("deposit", "a"), ("deposit", "new"), ("open", "new")):
        with pytest.raises(AccountNotFound):
            harness.queues.submit(Operation(kind, account, 1, None, f"op-{kind}", None, "c", operator=True))
    assert harness.bank.balance("a", Caller("ops", operator=True)).balance_cents == 100
    assert harness.server.accounts == {"a": 100}

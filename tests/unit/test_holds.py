"""Holds as the bank's service applies them (business/application/holds.py), on the fakes of tests/unit/fakes.py."""
import pytest

from business.application.bank_service import Caller
from business.application.errors import (
    AccountNotFound,
    Forbidden,
    HoldClosed,
    HoldExceeded,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    TooManyHolds,
)
from business.application.hold_expiry import HoldExpiry
from tests.unit.services import CLIENT, Harness

PAYEE = Caller("p")
OPERATOR = Caller("ops", operator=True)


@pytest.fixture
def harness():
    made = Harness({"a": 1000})
    made.bank.open("b", PAYEE)
    return made


def kinds(harness, account):
    return [(entry.kind, entry.amount_cents, entry.balance_cents) for entry in harness.server.history.get(account, [])]


def test_a_hold_sets_money_aside_without_moving_it(harness):
    receipt = harness.bank.place_hold("a", "b", 300, 60, CLIENT)
    assert (receipt.hold.state, receipt.hold.amount_cents, receipt.balance_cents, receipt.available_cents) == (
        "held", 300, 1000, 700)
    assert receipt.hold.expires_at_ms == int(harness.wall_seconds * 1000) + 60_000
    seen = harness.bank.balance("a", CLIENT)
    assert (seen.balance_cents, seen.available_cents) == (1000, 700)
    assert kinds(harness, "a") == [("hold", 300, 1000)]
    with pytest.raises(InsufficientFunds):
        harness.bank.withdraw("a", 701, CLIENT)
    with pytest.raises(InsufficientFunds):
        harness.bank.place_hold("a", "b", 701, 60, CLIENT)
    assert harness.bank.withdraw("a", 700, CLIENT).balance_cents == 300


def test_a_capture_moves_what_it_names_and_gives_back_the_rest(harness):
    hold = harness.bank.place_hold("a", "b", 300, 60, CLIENT).hold
    captured = harness.bank.capture(hold.id, 120, PAYEE)
    assert (captured.hold.state, captured.hold.captured_cents, captured.target_balance_cents) == ("captured", 120, 120)
    assert captured.balance_cents is None, "the payee sees no balance of the payer's"
    seen = harness.bank.balance("a", CLIENT)
    assert (seen.balance_cents, seen.available_cents) == (880, 880)
    assert kinds(harness, "a") == [("hold", 300, 1000), ("capture_out", 120, 880), ("hold_release", 180, 880)]
    assert kinds(harness, "b") == [("capture_in", 120, 120)]
    with pytest.raises(HoldClosed):
        harness.bank.capture(hold.id, None, PAYEE)
    with pytest.raises(HoldClosed):
        harness.bank.release(hold.id, CLIENT)


def test_only_the_targets_owner_captures_and_either_party_or_an_operator_releases(harness):
    hold = harness.bank.place_hold("a", "b", 300, 60, CLIENT).hold
    with pytest.raises(Forbidden):
        harness.bank.capture(hold.id, None, CLIENT)
    for stranger in (Caller("mallory"), OPERATOR):
        with pytest.raises((HoldNotFound, Forbidden)):
            harness.bank.capture(hold.id, None, stranger)
    with pytest.raises(HoldNotFound):
        harness.bank.release(hold.id, Caller("mallory"))
    with pytest.raises(HoldNotFound):
        harness.bank.hold(hold.id, Caller("mallory"))
    with pytest.raises(HoldExceeded):
        harness.bank.capture(hold.id, 301, PAYEE)
    assert harness.bank.release(hold.id, OPERATOR).hold.state == "released"
    assert harness.bank.balance("a", CLIENT).available_cents == 1000
    assert harness.bank.hold(hold.id, PAYEE).state == "released"


def test_a_hold_past_its_expiry_is_expired_wherever_it_is_read_and_closed_once(harness):
    hold = harness.bank.place_hold("a", "b", 300, 60, CLIENT).hold
    harness.wall_seconds += 60
    assert harness.bank.hold(hold.id, CLIENT).state == "expired"
    assert harness.bank.balance("a", CLIENT).available_cents == 1000
    assert harness.bank.held_holds("a", CLIENT) == []
    with pytest.raises(HoldClosed):
        harness.bank.capture(hold.id, None, PAYEE)
    assert harness.server.holds[hold.id].state == "expired"
    assert HoldExpiry(harness.queues, harness.holds).close_due() == 0
    assert kinds(harness, "a") == [("hold", 300, 1000), ("hold_expiry", 300, 1000)]


def test_the_banks_expiry_closes_a_hold_no_one_touches(harness):
    hold = harness.bank.place_hold("a", "b", 300, 60, CLIENT).hold
    expiry = HoldExpiry(harness.queues, harness.holds)
    assert expiry.close_due() == 0 and harness.server.holds[hold.id].state == "held"
    harness.wall_seconds += 61
    assert expiry.close_due() == 1
    closed = harness.server.holds[hold.id]
    assert (closed.state, closed.closed_at_ms) == ("expired", int(harness.wall_seconds * 1000))
    assert expiry.close_due() == 0


def test_a_hold_is_placed_by_its_origins_owner_for_an_account_that_exists(harness):
    for origin, target, caller in (("a", "nobody", CLIENT), ("b", "a", CLIENT), ("a", "b", PAYEE)):
        with pytest.raises(AccountNotFound):
            harness.bank.place_hold(origin, target, 100, 60, caller)
    for amount, seconds in ((0, 60), (100, 0), (100, 30 * 86400 + 1), (2_000_000, 60)):
        with pytest.raises(InvalidRequest):
            harness.bank.place_hold("a", "b", amount, seconds, CLIENT)
    with pytest.raises(Forbidden):
        harness.bank.place_hold("a", "b", 100, 60, OPERATOR)
    assert harness.server.holds == {} and harness.bank.balance("a", CLIENT).available_cents == 1000


def test_an_account_holds_at_most_its_cap_and_lists_them_soonest_expiring_first(harness):
    placed = [harness.bank.place_hold("a", "b", 10, seconds, CLIENT).hold for seconds in (90, 30, 60)]
    with pytest.raises(TooManyHolds):
        harness.bank.place_hold("a", "b", 10, 60, CLIENT)
    assert [hold.id for hold in harness.bank.held_holds("a", CLIENT)] == [placed[1].id, placed[2].id, placed[0].id]
    with pytest.raises(AccountNotFound):
        harness.bank.held_holds("a", PAYEE)


def test_a_keyed_hold_sent_again_is_the_first_and_sets_aside_once(harness):
    first = harness.bank.place_hold("a", "b", 300, 60, CLIENT, "key-1")
    again = harness.bank.place_hold("a", "b", 300, 60, CLIENT, "key-1")
    assert again.replayed and again.hold == first.hold
    assert harness.bank.balance("a", CLIENT).available_cents == 700
    captured = harness.bank.capture(first.hold.id, None, PAYEE, "key-2")
    assert harness.bank.capture(first.hold.id, None, PAYEE, "key-2") == captured.__class__(
        captured.hold, None, None, 300, True)


def test_a_key_used_again_for_a_new_hold_after_its_record_expired_is_refused_while_the_bank_keeps_the_hold(harness):
    first = harness.bank.place_hold("a", "b", 300, 60, CLIENT, "key-1")
    harness.server.operations.clear()       # the key's record past DATA_OPERATION_RETENTION; the hold still kept
    with pytest.raises(IdempotencyConflict):
        harness.bank.place_hold("a", "b", 300, 60, CLIENT, "key-1")
    assert harness.server.holds == {first.hold.id: first.hold}
    assert harness.bank.balance("a", CLIENT).available_cents == 700
    assert harness.server.leases == {}


def test_a_lock_cycle_closes_at_most_its_share_of_due_holds_and_the_rest_count_as_expired(harness):
    from business.application import holds
    from business.application.ports import Hold
    now_ms = int(harness.wall_seconds * 1000)
    for account in ("c", "d"):
        harness.server.accounts[account], harness.server.owners[account] = 100_000, "c"
        for number in range(holds.EXPIRIES_PER_BATCH // 2 + 2):
            hold = Hold(f"{account}{number:031x}", account, "b", 10, now_ms - 1000 + number, "held", 0, None, "c", "p")
            harness.server.holds[hold.id] = hold
    harness.bank.transfer("c", "d", 1, CLIENT)
    still_held = [hold for hold in harness.server.holds.values() if hold.state == "held"]
    assert len(still_held) == 4 and {hold.expires_at_ms for hold in still_held} == {now_ms - 990, now_ms - 989}
    assert harness.bank.balance("c", CLIENT).available_cents == harness.server.accounts["c"] == 99_999
    with pytest.raises(HoldClosed):
        harness.bank.release(still_held[0].id, CLIENT)
    assert ("transfer_out", 1, 99_999) in kinds(harness, "c")
    assert [hold.origin for hold in harness.server.holds.values() if hold.state == "held"] == ["d", "d"], (
        "the next cycle on c closed c's")

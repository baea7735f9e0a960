"""Holds in the store contract (data/store.py, data/holds.py), the same tests on both stores, called directly.

The store decides nothing about a hold but this: placed once, closed once, as placed, under its origin's lease."""
import time
import uuid

import pytest

from data.factory import create_store
from data.store import DueHold, HoldConflict, HoldsExceedBalance, HoldsFull, NotLockHolder, UnknownHold, Write
from shared.settings import load_data_settings
from tests.helpers import store_environ


@pytest.fixture
def bank(store, request):
    made = create_store(load_data_settings(store_environ(store, request, LOCK_TTL="2", DATA_OPEN_HOLDS_LIMIT="3")))
    yield made
    made.close()


def a_hold(origin="payer", target="payee", cents=300, expires_at=None, **changes):
    hold = {"id": uuid.uuid4().hex, "origin": origin, "target": target, "cents": cents,
            "expires_at": expires_at or int(time.time() * 1000) + 60_000, "state": "held", "captured": 0,
            "closed_at": None, "origin_owner": "alice", "target_owner": "bob"}
    return {**hold, **changes}


def closed(hold, state, captured=0):
    return {**hold, "state": state, "captured": captured, "closed_at": int(time.time() * 1000)}


def commit(bank, writes, holds, entries=None):
    """Lease writes' accounts as b1, write {account: cents} with holds; the outcome. Refused, the leases go back."""
    granted = bank.lock_all("b1", sorted(writes))
    tokens = {grant.account: grant.token for grant in granted.grants}
    try:
        return bank.commit("b1", {account: Write(cents, tokens[account]) for account, cents in writes.items()},
                           unlock=True, entries=entries, holds=holds)
    except (HoldConflict, HoldsFull, HoldsExceedBalance):
        for account, token in tokens.items():
            bank.unlock("b1", account, token)
        raise


def test_a_placed_hold_comes_with_its_origins_lease_and_read_and_by_its_id(bank):
    commit(bank, {"payer": 1000, "payee": 0}, [])
    hold = a_hold()
    commit(bank, {"payer": 1000}, [hold])
    grant = bank.lock_all("b1", ["payer"]).grants[0]
    assert grant.holds == (hold,)
    bank.unlock("b1", "payer", grant.token)
    assert bank.read("b2", "payer").holds == (hold,)
    assert bank.read("b2", "payee").holds == ()
    assert bank.hold(hold["id"]) == hold


def test_a_hold_is_closed_once_and_stays_as_closed(bank):
    commit(bank, {"payer": 1000, "payee": 0}, [])
    hold = a_hold()
    commit(bank, {"payer": 1000}, [hold])
    captured = closed(hold, "captured", 200)
    commit(bank, {"payer": 800, "payee": 200}, [captured])
    assert bank.hold(hold["id"]) == captured
    assert bank.read("b1", "payer").holds == ()
    for again in (closed(hold, "released"), closed(hold, "captured", 300), hold):
        with pytest.raises(HoldConflict):
            commit(bank, {"payer": 800, "payee": 200}, [again])
    assert bank.hold(hold["id"]) == captured and bank.read("b1", "payer").cents == 800


def test_no_hold_is_placed_over_another_of_its_id_nor_closed_unplaced(bank):
    commit(bank, {"payer": 1000, "payee": 0}, [])
    hold = a_hold()
    commit(bank, {"payer": 1000}, [hold])
    with pytest.raises(HoldConflict):
        commit(bank, {"payer": 1000}, [{**hold, "cents": 5}])
    with pytest.raises(HoldConflict):
        commit(bank, {"payer": 1000}, [closed({**hold, "cents": 5}, "released")])
    with pytest.raises(HoldConflict):
        commit(bank, {"payer": 1000}, [closed(a_hold(), "released")])
    with pytest.raises(UnknownHold):
        bank.hold(uuid.uuid4().hex)
    assert bank.read("b1", "payer").holds == (hold,)


def test_a_hold_is_written_only_under_its_origins_lease(bank):
    commit(bank, {"payer": 1000, "payee": 0}, [])
    token = bank.lock("b1", "payer").token
    bank.unlock("b1", "payer", token)
    with pytest.raises(NotLockHolder):
        bank.commit("b1", {"payer": Write(1000, token)}, holds=[a_hold()])
    payee = bank.lock("b1", "payee").token
    with pytest.raises(HoldConflict):
        bank.commit("b1", {"payee": Write(0, payee)}, unlock=True, holds=[a_hold()])
    assert bank.read("b1", "payer").holds == ()


def test_due_holds_are_the_held_ones_past_their_expiry_soonest_first(bank):
    commit(bank, {"payer": 1000, "payee": 0}, [])
    now = int(time.time() * 1000)
    late, early, later = (a_hold(expires_at=now - 1000), a_hold(expires_at=now - 2000),
                          a_hold(expires_at=now + 60_000))
    commit(bank, {"payer": 1000}, [late, early, later])
    assert bank.due_holds(now, 10) == [DueHold(early["id"], "payer", early["expires_at"]),
                                       DueHold(late["id"], "payer", late["expires_at"])]
    assert bank.due_holds(now, 1) == [DueHold(early["id"], "payer", early["expires_at"])]
    commit(bank, {"payer": 1000}, [closed(early, "expired")])
    assert [due.id for due in bank.due_holds(now, 10)] == [late["id"]]


def test_holds_past_the_cap_are_refused_and_nothing_applied(bank):
    commit(bank, {"payer": 1000, "payee": 0}, [])
    commit(bank, {"payer": 1000}, [a_hold(), a_hold(), a_hold()])
    with pytest.raises(HoldsFull):
        commit(bank, {"payer": 900}, [a_hold()])
    assert bank.read("b1", "payer").cents == 1000 and len(bank.read("b1", "payer").holds) == 3


def test_no_write_leaves_a_balance_below_what_its_held_holds_set_aside(bank):
    commit(bank, {"payer": 1000, "payee": 0}, [])
    with pytest.raises(HoldsExceedBalance):
        commit(bank, {"payer": 1000}, [a_hold(cents=1001)])
    hold = a_hold(cents=600)
    commit(bank, {"payer": 1000}, [hold])
    for cents, holds in ((599, []), (1000, [a_hold(cents=401)]), (799, [closed(a_hold(), "released")])):
        with pytest.raises((HoldsExceedBalance, HoldConflict)):
            commit(bank, {"payer": cents}, holds)
    commit(bank, {"payer": 600}, [])
    commit(bank, {"payer": 100, "payee": 500}, [closed(hold, "captured", 500)])
    assert bank.read("b1", "payer").cents == 100 and bank.read("b1", "payer").holds == ()


def test_a_hold_expires_only_once_its_expiry_is_reached_and_is_captured_or_released_only_before(bank):
    commit(bank, {"payer": 1000, "payee": 0}, [])
    due, later = a_hold(expires_at=int(time.time() * 1000) - 10), a_hold()
    commit(bank, {"payer": 1000}, [due, later])
    for wrong in (closed(later, "expired"), closed(due, "released"), closed(due, "captured", 300)):
        with pytest.raises(HoldConflict):
            commit(bank, {"payer": 1000}, [wrong])
    commit(bank, {"payer": 1000}, [closed(due, "expired")])
    assert bank.read("b1", "payer").holds == (later,)

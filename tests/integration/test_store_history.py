"""The history part of the store contract (data/store.py), the same tests on both stores, called directly."""
import pytest

from data.factory import create_store
from data.store import HistoryMismatch, NotLockHolder, UnknownAccount, Write
from shared.settings import load_data_settings
from tests.helpers import store_environ


@pytest.fixture
def bank(store, request):
    made = create_store(load_data_settings(store_environ(store, request, LOCK_TTL="2")))
    yield made
    made.close()


def entry(kind, cents, balance, operation, counterparty=None, key=None):
    return {"kind": kind, "cents": cents, "balance": balance, "counterparty": counterparty, "operation": operation,
            "key": key}


def apply(bank, balances, entries, op_ids):
    """Lock the accounts of balances as b1 and commit them with entries ({account: [entry]}) and op_ids' records."""
    grants = {grant.account: grant.token for grant in bank.lock_all("b1", sorted(balances)).grants}
    operations = [{"id": op_id, "request": f"request {op_id}", "result": {}} for op_id in op_ids]
    return bank.commit("b1", {a: Write(cents, grants[a]) for a, cents in balances.items()}, operations, unlock=True,
                       entries=entries)


def shown(page):
    return [(e["seq"], e["kind"], e["cents"], e["balance"], e["counterparty"], e["operation"], e["key"])
            for e in page.entries]


def test_each_change_is_numbered_per_account_in_commit_order_newest_first(bank):
    apply(bank, {"a": 150}, {"a": [entry("deposit", 100, 100, "op-1", key="k1"),
                                   entry("deposit", 50, 150, "op-2")]}, ["op-1", "op-2"])
    apply(bank, {"a": 120, "b": 30}, {"a": [entry("transfer_out", 30, 120, "op-3", "b")],
                                      "b": [entry("transfer_in", 30, 30, "op-3", "a")]}, ["op-3"])
    assert shown(bank.history("a")) == [(3, "transfer_out", 30, 120, "b", "op-3", None),
                                        (2, "deposit", 50, 150, None, "op-2", None),
                                        (1, "deposit", 100, 100, None, "op-1", "k1")]
    assert shown(bank.history("b")) == [(1, "transfer_in", 30, 30, "a", "op-3", None)]
    newest = bank.history("a").entries[0]
    assert newest["account"] == "a" and newest["at"] > 1_700_000_000_000
    assert bank.history("a").next_before is None


def test_pages_go_back_from_before_until_the_oldest(bank):
    for n in range(1, 6):
        apply(bank, {"a": n * 10}, {"a": [entry("deposit", 10, n * 10, f"op-{n}")]}, [f"op-{n}"])
    first = bank.history("a", limit=2)
    assert [e["seq"] for e in first.entries] == [5, 4] and first.next_before == 4
    second = bank.history("a", before=first.next_before, limit=2)
    assert [e["seq"] for e in second.entries] == [3, 2] and second.next_before == 2
    last = bank.history("a", before=second.next_before, limit=2)
    assert [e["seq"] for e in last.entries] == [1] and last.next_before is None


def test_a_replayed_commit_adds_no_entry(bank):
    apply(bank, {"a": 100}, {"a": [entry("deposit", 100, 100, "op-1")]}, ["op-1"])
    replayed = apply(bank, {"a": 100}, {"a": [entry("deposit", 100, 100, "op-1")]}, ["op-1"])
    assert replayed.replayed and replayed.entries == []
    assert [e["seq"] for e in bank.history("a").entries] == [1]


def test_entries_that_do_not_follow_from_the_balance_held_apply_nothing(bank):
    apply(bank, {"a": 100}, {"a": [entry("deposit", 100, 100, "op-1")]}, ["op-1"])
    token = bank.lock("b1", "a").token
    operation = {"id": "op-2", "request": "request op-2", "result": {}}
    with pytest.raises(HistoryMismatch):
        # The balance is 100: a deposit of 10 cannot leave 500.
        bank.commit("b1", {"a": Write(500, token)}, [operation], unlock=True,
                    entries={"a": [entry("deposit", 10, 500, "op-2")]})
    assert bank.read("b1", "a", token).cents == 100 and [e["seq"] for e in bank.history("a").entries] == [1]
    # Its operation was not recorded, its lease not given back: the right commit goes through under it.
    assert not bank.commit("b1", {"a": Write(110, token)}, [operation], unlock=True,
                           entries={"a": [entry("deposit", 10, 110, "op-2")]}).replayed
    assert [(e["seq"], e["balance"]) for e in bank.history("a").entries] == [(2, 110), (1, 100)]


def test_a_write_without_entries_is_recorded_as_a_signed_adjustment(bank):
    apply(bank, {"a": 100}, {"a": [entry("deposit", 100, 100, "op-1")]}, ["op-1"])
    token = bank.lock("b1", "a").token
    bank.commit("b1", {"a": Write(40, token)}, unlock=True)
    newest = bank.history("a").entries[0]
    assert (newest["seq"], newest["kind"], newest["cents"], newest["balance"]) == (2, "adjustment", -60, 40)


def test_entries_are_numbered_on_after_a_commit_under_a_kept_lock(bank):
    token = bank.lock("b1", "a").token
    bank.commit("b1", {"a": Write(100, token)}, entries={"a": [entry("deposit", 100, 100, "op-1")]})
    bank.commit("b1", {"a": Write(70, token)}, unlock=True, entries={"a": [entry("withdrawal", 30, 70, "op-2")]})
    assert [(e["seq"], e["balance"]) for e in bank.history("a").entries] == [(2, 70), (1, 100)]


def test_a_late_commit_under_a_lost_lock_adds_no_entry(bank):
    token = bank.lock("b1", "a").token
    bank.unlock("b1", "a", token)
    with pytest.raises(NotLockHolder):
        bank.commit("b1", {"a": Write(100, token)}, unlock=True, entries={"a": [entry("deposit", 100, 100, "op-1")]})
    with pytest.raises(UnknownAccount):
        bank.history("a")


def test_the_history_of_an_unknown_account_is_refused(bank):
    with pytest.raises(UnknownAccount):
        bank.history("nobody")

"""Owners in the data tier, the same tests on both stores: recorded in the commit that writes the account's first
owner-naming balance, answered with every lock, read and history page, never changed, listed a page at a time; on
the embedded store kept at every crash cut, across compactions and restarts. An account written without one has
none (as every account from before owners)."""
import pytest

from data.factory import create_store
from data.store import AccountsPage, AccountView, NotLockHolder, OwnerConflict, UnknownAccount, Write
from shared.settings import load_data_settings
from tests.helpers import data_environ, store_environ


@pytest.fixture
def bank(store, request):
    made = create_store(load_data_settings(store_environ(store, request, LOCK_TTL="2")))
    yield made
    made.close()


def write(bank, account, cents, owner=None):
    """Lock account as b1 and write cents, naming owner; return the commit's outcome."""
    token = bank.lock("b1", account).token
    return bank.commit("b1", {account: Write(cents, token, owner)}, unlock=True)


def owner_seen_by_a_lock(bank, account):
    granted = bank.lock("b2", account)
    bank.unlock("b2", account, granted.token)
    return granted.owner


def test_an_owner_is_recorded_with_the_first_balance_and_answered_with_every_lock_read_and_history_page(bank):
    write(bank, "acc", 500, "alice")
    assert owner_seen_by_a_lock(bank, "acc") == "alice"
    together = bank.lock_all("b1", ["acc", "fresh"])
    assert [(grant.account, grant.cents, grant.owner) for grant in together.grants] == [("acc", 500, "alice"),
                                                                                       ("fresh", None, None)]
    for grant in together.grants:
        bank.unlock("b1", grant.account, grant.token)
    assert bank.read("b1", "acc") == AccountView(500, "alice")
    assert bank.history("acc").owner == "alice"


def test_a_history_asked_as_an_owners_is_another_owners_account_refused_as_no_account(bank):
    write(bank, "acc", 500, "alice")
    write(bank, "old", 7)
    assert [entry["cents"] for entry in bank.history("acc", owner="alice").entries] == [500]
    for account, owner in (("acc", "bob"), ("old", "alice"), ("nobody", "alice")):
        with pytest.raises(UnknownAccount):
            bank.history(account, owner=owner)


def test_an_owner_stays_through_writes_that_name_none_and_another_is_refused_with_nothing_applied(bank):
    write(bank, "acc", 500, "alice")
    write(bank, "acc", 400)
    write(bank, "acc", 300, "alice")
    token, other = bank.lock("b1", "acc").token, bank.lock("b1", "other").token
    with pytest.raises(OwnerConflict):
        bank.commit("b1", {"acc": Write(1, token, "mallory"), "other": Write(7, other)})
    assert bank.read("b1", "acc", token) == AccountView(300, "alice")
    with pytest.raises(UnknownAccount):
        bank.read("b1", "other", other)
    assert bank.accounts("mallory") == AccountsPage([], None)


def test_an_account_written_without_an_owner_has_none_until_a_write_names_its_first(bank):
    write(bank, "old", 100)
    assert bank.read("b1", "old") == AccountView(100, None) and bank.history("old").owner is None
    assert owner_seen_by_a_lock(bank, "old") is None
    write(bank, "old", 100, "carol")
    assert bank.read("b1", "old").owner == "carol" and bank.accounts("carol").accounts == [("old", 100)]


def test_a_commit_refused_by_fencing_records_no_owner(bank):
    stale = bank.lock("b1", "acc").token
    bank.unlock("b1", "acc", stale)
    with pytest.raises(NotLockHolder):
        bank.commit("b1", {"acc": Write(5, stale, "alice")})
    with pytest.raises(UnknownAccount):
        bank.read("b1", "acc")
    assert bank.accounts("alice") == AccountsPage([], None)


def test_an_owners_accounts_are_listed_in_id_order_a_page_at_a_time_with_their_balances(bank):
    for cents, account in enumerate(["c", "a", "e", "b", "d"], start=1):
        write(bank, account, cents, "alice")
    write(bank, "a0", 9, "bob")
    first = bank.accounts("alice", None, 2)
    assert first == AccountsPage([("a", 2), ("b", 4)], "b")
    second = bank.accounts("alice", first.next_after, 2)
    assert second == AccountsPage([("c", 1), ("d", 5)], "d")
    assert bank.accounts("alice", second.next_after, 2) == AccountsPage([("e", 3)], None)
    assert bank.accounts("bob") == AccountsPage([("a0", 9)], None)
    assert bank.accounts("nobody") == AccountsPage([], None)


# ---- the embedded store's journal ---------------------------------------------------------------------------

def open_store(journal, **overrides):
    return create_store(load_data_settings(data_environ(DATA_JOURNAL=str(journal), **overrides)),
                        background=lambda job: job())


def record_ends(content):
    return [index + 1 for index, byte in enumerate(content) if byte == ord("\n")]


def owners(store, accounts):
    def owner(account):
        try:
            return store.read("b1", account).owner
        except UnknownAccount:
            return "no account"
    return {account: owner(account) for account in accounts}


def test_owners_are_kept_at_every_crash_cut_of_the_journal(tmp_path):
    original = tmp_path / "original.journal"
    store = open_store(original)
    write(store, "a", 100, "alice")
    write(store, "old", 5)
    write(store, "b", 200, "bob")
    store.close()
    content = original.read_bytes()
    ends = record_ends(content)
    journal = tmp_path / "bank.journal"
    for cut in range(ends[-3], len(content) + 1):
        journal.write_bytes(content[:cut])
        whole = sum(1 for end in ends if end <= cut)
        store = open_store(journal)
        expected = {"a": "alice", "old": None if whole >= 3 else "no account", "b": "bob" if whole >= 4 else
                    "no account"}
        assert owners(store, ["a", "old", "b"]) == expected, cut
        assert [account for account, _ in store.accounts("bob").accounts] == (["b"] if whole >= 4 else []), cut
        store.close()


def test_owners_survive_compactions_and_restarts_and_a_journal_without_them_gives_none(tmp_path):
    journal = tmp_path / "bank.journal"
    store = open_store(journal, DATA_COMPACT_MIN_BYTES="2000")
    write(store, "old", 1)
    for i in range(150):
        write(store, f"acc{i % 3}", i, "alice" if i % 3 else "bob")
    assert store.stats().compactions > 1
    store.close()
    store = open_store(journal)
    assert owners(store, ["acc0", "acc1", "acc2", "old"]) == {"acc0": "bob", "acc1": "alice", "acc2": "alice",
                                                              "old": None}
    assert store.accounts("alice").accounts == [("acc1", 148), ("acc2", 149)]
    with pytest.raises(OwnerConflict):
        write(store, "acc0", 1, "alice")
    store.close()

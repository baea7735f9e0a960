"""The store contract (data/store.py), the same tests on both stores, called directly: no HTTP in between.

Real clocks on both, because etcd's leases expire in real time; LOCK_TTL is 2 s, etcd's shortest lease.
"""
import threading
import time

import pytest

from data.factory import create_store
from data.store import (
    CallerGone,
    CommitOutcome,
    LockGrant,
    LockHeld,
    NotLockHolder,
    OperationConflict,
    RecordsFull,
    Stats,
    UnknownAccount,
    Write,
)
from shared.settings import load_data_settings
from tests.helpers import InThread, store_environ, wait_until

TTL = 2


@pytest.fixture
def bank(store, request):
    made = create_store(load_data_settings(store_environ(store, request, LOCK_TTL=str(TTL), DATA_OPERATION_LIMIT="2",
                                                         DATA_RETRY_RECORD_LIMIT="1")))
    yield made
    made.close()


def op(op_id, keyed=True, result=None):
    return {"id": op_id, "request": f"request of {op_id}", "result": result or {"balance": 1}, "keyed": keyed}


def put(bank, account, cents, operations=()):
    """Lock account as b1 and write cents; return the commit's outcome."""
    token = bank.lock("b1", account).token
    return bank.commit("b1", {account: Write(cents, token)}, operations, unlock=True)


def wait_until_waiting(bank, count):
    wait_until(lambda: bank.counts().waiting == count, 10, f"{count} requests never queued")


def test_a_lease_comes_with_a_token_and_the_balance_and_holds_off_everyone_else(bank):
    granted = bank.lock("b1", "acc")
    assert isinstance(granted, LockGrant) and granted.ttl == TTL and granted.cents is None and granted.recorded == {}
    for business in ("b2", "b1"):
        with pytest.raises(LockHeld) as held:
            bank.lock(business, "acc")
        assert held.value.account == "acc" and held.value.holder == "b1" and held.value.retry_after > 0
    bank.commit("b1", {"acc": Write(500, granted.token)}, unlock=True)
    assert bank.lock("b2", "acc").cents == 500


def test_the_holder_renews_with_its_token_and_no_one_else_can(bank):
    token = bank.lock("b1", "acc").token
    assert bank.lock("b1", "acc", token=token).token == token
    for business, presented in (("b2", token), ("b1", token + 1)):
        with pytest.raises(NotLockHolder):
            bank.lock(business, "acc", token=presented)


def test_tokens_only_grow_and_never_repeat(bank):
    tokens = []
    for account in ("a", "b", "a", "c", "a"):
        tokens.append(bank.lock("b1", account).token)
        bank.unlock("b1", account, tokens[-1])
    assert tokens == sorted(set(tokens))


def test_a_lock_set_is_leased_whole_or_not_at_all(bank):
    bank.lock("b1", "b")
    with pytest.raises(LockHeld) as held:
        bank.lock_all("b2", ["a", "b", "c"])
    assert held.value.account == "b" and bank.counts().leases == 1
    granted = bank.lock_all("b2", ["x", "y"])
    assert [grant.account for grant in granted.grants] == ["x", "y"] and granted.ttl == TTL
    assert bank.counts().leases == 3
    with pytest.raises(LockHeld):
        bank.lock("b1", "y")


def test_waiting_requests_are_served_in_arrival_order(bank):
    token = bank.lock("b1", "acc").token
    order = []

    def take_and_give_back(name):
        granted = bank.lock("b2", "acc", wait=5)
        order.append(name)
        bank.unlock("b2", "acc", granted.token)

    waiters = []
    for position, name in enumerate(("first", "second", "third"), start=1):
        waiters.append(InThread(take_and_give_back, name))
        wait_until_waiting(bank, position)
    bank.unlock("b1", "acc", token)
    for waiter in waiters:
        waiter.result()
    assert order == ["first", "second", "third"] and bank.counts().waiting == 0


def test_a_wait_that_runs_out_is_lock_held_and_leaves_no_one_waiting(bank):
    bank.lock("b1", "acc")
    started = time.monotonic()
    with pytest.raises(LockHeld):
        bank.lock("b2", "acc", wait=0.3)
    assert 0.3 <= time.monotonic() - started < 3 and bank.counts().waiting == 0


def test_the_holder_reads_with_its_token_and_anyone_else_waits_its_turn(bank):
    put(bank, "acc", 700)
    token = bank.lock("b1", "acc").token
    assert bank.read("b1", "acc", token).cents == 700
    with pytest.raises(LockHeld):
        bank.read("b2", "acc")
    reader = InThread(bank.read, "b2", "acc", wait=5)
    wait_until_waiting(bank, 1)
    bank.commit("b1", {"acc": Write(800, token)}, unlock=True)
    assert reader.result().cents == 800
    with pytest.raises(UnknownAccount):
        bank.read("b1", "nobody")


def test_a_commit_applies_all_of_its_writes_or_none(bank):
    put(bank, "x", 100)
    put(bank, "y", 100)
    tx, ty = bank.lock("b1", "x").token, bank.lock("b1", "y").token
    bank.unlock("b1", "y", ty)
    with pytest.raises(NotLockHolder):
        bank.commit("b1", {"x": Write(50, tx), "y": Write(150, ty)}, [op("op-1")], unlock=True)
    assert bank.read("b1", "x", tx).cents == 100 and bank.read("b2", "y").cents == 100
    assert bank.lock("b1", "y").recorded == {} and bank.counts().idempotency_records == 0


def test_a_late_write_under_an_expired_lease_is_fenced_off(bank):
    stale = bank.lock("b1", "acc").token

    def take():
        try:
            return bank.lock("b2", "acc")
        except LockHeld:
            return None

    taken = wait_until(take, 10, "the lease never expired")
    with pytest.raises(NotLockHolder):
        bank.commit("b1", {"acc": Write(900, stale)}, unlock=True)
    assert taken.token > stale and taken.cents is None


def test_a_commit_sent_again_is_replayed_with_its_first_results_and_applies_nothing(bank):
    first = put(bank, "acc", 100, [op("op-1", result={"balance": 100})])
    assert first[:2] == (False, [{"balance": 100}]) and len(first.entries) == 1
    again = put(bank, "acc", 999, [op("op-1", result={"balance": 999})])
    assert again == CommitOutcome(True, [{"balance": 100}])
    assert bank.read("b1", "acc").cents == 100 and bank.counts().leases == 0
    token = bank.lock("b1", "acc").token
    with pytest.raises(OperationConflict):
        bank.commit("b1", {"acc": Write(5, token)}, [op("op-1"), op("op-2")], unlock=True)
    # Refused, so applied nothing, the lease's release included.
    assert bank.read("b1", "acc", token).cents == 100
    assert bank.lock("b1", "acc", token=token, lookup=["op-1", "op-2"]).recorded == {
        "op-1": {"request": "request of op-1", "result": {"balance": 100}}}


def test_records_at_their_cap_refuse_the_commit_and_apply_nothing(bank):
    put(bank, "acc", 1, [op("key-1")])
    put(bank, "acc", 2, [op("key-2")])
    token = bank.lock("b1", "acc").token
    with pytest.raises(RecordsFull) as full:
        bank.commit("b1", {"acc": Write(3, token)}, [op("key-3")])
    assert full.value.retry_after >= 1 and bank.read("b1", "acc", token).cents == 2
    # Writes without a key are recorded in a table of their own, with a cap of its own.
    bank.commit("b1", {"acc": Write(4, token)}, [op("bare-1", keyed=False)])
    with pytest.raises(RecordsFull):
        bank.commit("b1", {"acc": Write(5, token)}, [op("bare-2", keyed=False)])
    counts = bank.counts()
    assert (counts.idempotency_records, counts.retry_records) == (2, 1)
    assert bank.read("b1", "acc", token).cents == 4


def test_a_commit_gives_back_the_leases_it_was_asked_to_release(bank):
    granted = bank.lock_all("b1", ["a", "b"])
    ta, tb = (grant.token for grant in granted.grants)
    bank.commit("b1", {"a": Write(10, ta)}, [op("op-r")], unlock=True, release={"b": tb})
    assert bank.counts().leases == 0 and bank.lock("b2", "b").cents is None


def test_the_view_lists_live_leases_soonest_ending_first_with_the_total(bank):
    put(bank, "alpha", 250)
    put(bank, "zeta", 50)
    bank.lock("b2", "zeta")
    time.sleep(1.2)             # the leases' ages on the real clock: zeta's ends 1.2 s before alpha's
    bank.lock("b1", "alpha")
    view = bank.view(10)
    assert (view.total_cents, view.accounts, view.waiting, view.lease_count) == (300, 2, 0, 2)
    assert [(lease.account, lease.holder) for lease in view.leases] == [("zeta", "b2"), ("alpha", "b1")]
    # etcd tells whole seconds left, rounded down.
    assert all(0 <= lease.seconds_left <= TTL for lease in view.leases)
    assert [lease.account for lease in bank.view(1).leases] == ["zeta"]
    counts = bank.counts()
    assert (counts.accounts, counts.leases, counts.waiting) == (2, 2, 0)


def test_stats_tell_the_stores_upkeep_and_none_where_it_has_none(bank, store):
    put(bank, "acc", 100, [op("op-1")])
    # The embedded store here journals nothing (DATA_JOURNAL is empty), so it never compacted; etcd keeps no
    # journal of its own, but holds the deposit's entry (no statement store here, so no relay). A journal's
    # compactions are counted in test_data_journal.py, the relay's upkeep in test_statements.py.
    expected = {"embedded": Stats(compactions=0, compaction_copy_seconds=0.0, compaction_switch_seconds=0.0),
                "etcd": Stats(history_backlog=1)}
    assert bank.stats() == expected[store]


def test_closing_a_store_ends_every_thread_it_started(store, request, tmp_path):
    before = set(threading.enumerate())
    made = create_store(load_data_settings(store_environ(store, request, DATA_JOURNAL=str(tmp_path / "bank.journal"),
                                                         DATA_FSYNC="everysec")))
    put(made, "acc", 100, [op("op-1")])
    assert made.history("acc").entries, "the commit made no history: its writer would not have run"
    started = [thread for thread in threading.enumerate() if thread not in before]
    assert started, "the store started no thread: this test would prove nothing"
    made.close()
    wait_until(lambda: not any(thread.is_alive() for thread in started), 5,
               lambda: f"still running after close: {[thread.name for thread in started if thread.is_alive()]}")


def held_after_granting(bank, store, monkeypatch):
    """The first grant from now on, once applied and before it is answered, waits for the Event returned (set it
    to let it go on): a data server paused there. Its second Event is set when it is held."""
    go_on, held = threading.Event(), threading.Event()
    # What each store does between applying a grant and answering it.
    owner, name = (bank, "_sync_or_give_back") if store == "embedded" else (bank._local, "granted")
    original = getattr(owner, name)

    def paused(*args, **kwargs):
        if not held.is_set():
            held.set()
            assert go_on.wait(10), "the paused grant was never let go on"
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, paused)
    return go_on, held


def test_a_later_attempt_of_the_same_call_is_answered_with_the_locks_the_first_was_granted(bank):
    put(bank, "a", 100)
    first = bank.lock_all("b1", ["a", "b"], call="call-1")
    again = bank.lock_all("b1", ["a", "b"], call="call-1")
    assert [(grant.token, grant.cents) for grant in again.grants] == [(grant.token, grant.cents)
                                                                      for grant in first.grants]
    assert [grant.cents for grant in again.grants] == [100, None]
    # Another call, another business's same call, or no call: held, as ever.
    for business, call in (("b1", "call-2"), ("b2", "call-1"), ("b1", None)):
        with pytest.raises(LockHeld):
            bank.lock_all(business, ["a", "b"], call=call)
    bank.commit("b1", {"a": Write(100, again.grants[0].token), "b": Write(200, again.grants[1].token)}, unlock=True)
    # Released, nothing of it is left to take over: the same call again is a new lock.
    assert bank.lock_all("b1", ["a"], call="call-1").grants[0].token > first.grants[0].token


def test_a_request_read_after_its_caller_gave_up_takes_nothing(bank):
    with pytest.raises(CallerGone):
        bank.lock_all("b1", ["acc"], call="gone", answer_by=time.monotonic() - 0.1)
    assert bank.counts().leases == 0 and bank.lock("b2", "acc").cents is None


def test_a_request_waiting_in_line_leaves_when_its_caller_gives_up_not_when_its_wait_ends(bank):
    bank.lock("b1", "acc")
    started = time.monotonic()
    with pytest.raises((LockHeld, CallerGone)):
        bank.lock_all("b2", ["acc"], wait=8, call="impatient", answer_by=started + 0.5)
    assert time.monotonic() - started < 4 and bank.counts().waiting == 0


def test_a_grant_finished_after_its_caller_gave_up_is_given_back_at_once(bank, store, monkeypatch):
    go_on, held = held_after_granting(bank, store, monkeypatch)
    answer_by = time.monotonic() + 0.3
    late = InThread(bank.lock_all, "b1", ["acc"], call="late", answer_by=answer_by)
    wait_until(held.is_set, 5, "the grant was never applied")
    wait_until(lambda: time.monotonic() > answer_by, 5, "the caller never gave up")
    go_on.set()
    with pytest.raises(CallerGone):
        late.result()
    # Given back, not left to its lease (2 s): anyone may lock the account now, without waiting.
    assert bank.lock("b2", "acc").cents is None


def test_a_late_grant_that_a_later_attempt_took_over_is_left_to_it(bank, store, monkeypatch):
    go_on, held = held_after_granting(bank, store, monkeypatch)
    answer_by = time.monotonic() + 0.3
    late = InThread(bank.lock_all, "b1", ["acc"], call="retried", answer_by=answer_by)
    wait_until(held.is_set, 5, "the grant was never applied")
    again = bank.lock_all("b1", ["acc"], call="retried")
    wait_until(lambda: time.monotonic() > answer_by, 5, "the first attempt's caller never gave up")
    go_on.set()
    with pytest.raises(CallerGone):
        late.result()
    # The late attempt gave nothing back: the lease it was granted is the later attempt's, which writes under it.
    assert bank.commit("b1", {"acc": Write(700, again.grants[0].token)}, unlock=True).replayed is False
    assert bank.lock("b2", "acc").cents == 700

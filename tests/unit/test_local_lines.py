"""A data server's own lines and locks (data/etcd/local_lines.py), with real threads and a real clock."""
import threading
import time

from data.etcd.local_lines import LocalLines
from tests.helpers import InThread, wait_until


def sleeping_on(lines):
    """How many threads wait on the lines' condition (CPython's Condition keeps its sleepers in _waiters)."""
    return len(lines._changed._waiters)


def test_requests_for_overlapping_accounts_go_in_the_order_they_joined():
    lines, order = LocalLines(), []
    first = lines.join(["a", "b"])
    second, third = lines.join(["b"]), lines.join(["a", "c"])
    both_first = threading.Barrier(2, timeout=5)

    def go(ticket, accounts, name):
        assert lines.wait_first(ticket, accounts, time.monotonic() + 5), f"{name} was never first"
        order.append(name)
        both_first.wait()       # each leaves only once the other is first too: neither waits for the other
        lines.leave(ticket, accounts)

    waiters = [InThread(go, third, ["a", "c"], "third"), InThread(go, second, ["b"], "second")]
    wait_until(lambda: sleeping_on(lines) == 2, 5, "the two requests never waited")
    assert order == [] and lines.waiting(["c"]) == 1 and lines.waiting() == 3
    lines.leave(first, ["a", "b"])
    for waiter in waiters:
        waiter.result()
    # Behind the first on different accounts, both went once it left.
    assert sorted(order) == ["second", "third"] and lines.waiting() == 0


def test_a_wait_for_a_release_ends_with_the_release_or_with_the_lease_at_the_latest():
    lines = LocalLines()
    lines.granted(["a"], 7, time.monotonic() + 5)
    waiter = InThread(lines.wait_unheld, ["a", "b"], time.monotonic() + 5)
    wait_until(lambda: sleeping_on(lines) == 1, 5, "the wait never began")
    released = time.monotonic()
    lines.released(["a"])
    waiter.result()
    assert time.monotonic() - released < 1 and not lines.held_here({"a": 7})
    lines.granted(["b"], 8, time.monotonic() + 0.3)         # never released: its lease ends
    started = time.monotonic()
    lines.wait_unheld(["b"], time.monotonic() + 5)
    assert 0.25 < time.monotonic() - started < 1 and not lines.held_here({"b": 8})
    lines.granted(["c"], 9, time.monotonic() + 5)
    started = time.monotonic()
    lines.wait_unheld(["c"], time.monotonic() + 0.2)    # nor in the caller's wait
    assert 0.15 < time.monotonic() - started < 1 and lines.held_here({"c": 9})


def test_a_lock_etcd_shows_under_another_token_is_not_believed_held_here_any_more():
    lines = LocalLines()
    lines.granted(["a", "b"], 7, time.monotonic() + 5)
    # Released through another data server, "a" was granted again there (token 12): this process holds only "b".
    assert not lines.held_here({"a": 12})
    assert lines.held_here({"b": 7})
    started = time.monotonic()
    lines.wait_unheld(["a"], time.monotonic() + 5)
    assert time.monotonic() - started < 1

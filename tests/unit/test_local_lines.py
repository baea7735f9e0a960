"""A data server's own lines and locks (data/etcd/local_lines.py), with real threads and a real clock."""
import threading
import time

from data.etcd.local_lines import LocalLines


def test_requests_for_overlapping_accounts_go_in_the_order_they_joined():
    lines, order = LocalLines(), []
    first = lines.join(["a", "b"])
    second, third = lines.join(["b"]), lines.join(["a", "c"])

    def go(ticket, accounts, name):
        assert lines.wait_first(ticket, accounts, time.monotonic() + 5)
        order.append(name)
        lines.leave(ticket, accounts)

    threads = [threading.Thread(target=go, args=(t, accounts, name)) for t, accounts, name in
               ((third, ["a", "c"], "third"), (second, ["b"], "second"))]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    assert order == [] and lines.waiting(["c"]) == 1 and lines.waiting() == 3
    lines.leave(first, ["a", "b"])
    for thread in threads:
        thread.join(5)
    # Behind the first on different accounts, both went once it left; neither waited for the other.
    assert sorted(order) == ["second", "third"] and lines.waiting() == 0


def test_a_wait_for_a_release_ends_with_the_release_or_with_the_lease_at_the_latest():
    lines = LocalLines()
    lines.granted(["a"], time.monotonic() + 5)
    releaser = threading.Timer(0.2, lines.released, [["a"]])
    started = time.monotonic()
    releaser.start()
    lines.wait_unheld(["a", "b"], time.monotonic() + 5)
    assert 0.15 < time.monotonic() - started < 1 and not lines.held_here(["a"])
    lines.granted(["b"], time.monotonic() + 0.3)         # never released: its lease ends
    started = time.monotonic()
    lines.wait_unheld(["b"], time.monotonic() + 5)
    assert 0.25 < time.monotonic() - started < 1 and not lines.held_here(["b"])
    lines.granted(["c"], time.monotonic() + 5)
    started = time.monotonic()
    lines.wait_unheld(["c"], time.monotonic() + 0.2)    # nor in the caller's wait
    assert 0.15 < time.monotonic() - started < 1 and lines.held_here(["c"])

"""The partition lab's figures, from a run whose shape is known: what a reader of the results table is told."""
from lab.report import figures, markdown, timeline

ACCOUNTS = ("a", "b")


def steady_run(gap, stops_at=None, windows=((10.0, 18.0),)):
    """Ten acknowledged deposits a second for 30 s, on accounts a and b in turn, none sent in the first `gap` seconds
    of the first fault (those sent during the gap are answered at its end); one 503 during that fault. From stops_at
    on every write is refused (the bank stopped serving)."""
    first_start = windows[0][0]
    events = []
    for tenth in range(300):
        sent = tenth / 10
        if first_start <= sent < first_start + gap:
            continue
        outcome = "refused" if stops_at is not None and sent >= stops_at else "ok"
        events.append({"started_at": sent, "finished_at": sent + 0.05, "outcome": outcome, "kind": "deposit",
                       "accounts": [ACCOUNTS[tenth % 2]], "failures": []})
    events.append({"started_at": first_start, "finished_at": first_start + gap, "outcome": "ok", "kind": "deposit",
                   "accounts": ["a"], "failures": [[first_start + 0.5, 503, "account_busy"]]})
    return {"schedule": "test", "violations": [], "unknown": 0, "sent": len(events),
            "operations": sum(1 for e in events if e["outcome"] == "ok"), "events": events,
            "accounts": list(ACCOUNTS), "ended_at": 30.0,
            "windows": [{"name": f"fault {number}", "done": "the leader cut off", "start": start, "heal": heal,
                         "fencing_refusals": 0, "late_writes": []}
                        for number, (start, heal) in enumerate(windows, 1)]}


def test_a_short_stall_serves_and_recovers():
    row, = figures(steady_run(gap=2))
    assert round(row["rate_before"]) == 10 and round(row["longest_stall_s"], 1) == 2.0
    assert round(row["first_success_s"], 1) == 2.0 and row["unavailable"] == {"account_busy": 1}
    assert row["serving"] and row["recovered"] and row["steady"] and round(row["share_settled"], 1) == 1.0


def test_a_stall_past_five_seconds_is_reported_as_not_serving():
    run = steady_run(gap=7)
    row, = figures(run)
    assert not row["serving"] and row["recovered"] and round(row["longest_stall_s"], 1) == 7.0
    assert "fault 1: NOT serving, recovered, steady" in markdown(run, [row])
    # The chart counts from the first answer of the run (0.05 s here).
    assert [(name, round(start, 2), round(heal, 2)) for name, start, heal in timeline(run)["windows"]] == [
        ("fault 1", 9.95, 17.95)]


def test_a_bank_that_serves_for_a_while_after_healing_then_refuses_every_write_is_not_steady():
    run = steady_run(gap=0, stops_at=21.0)
    row, = figures(run)
    assert row["serving"] and row["recovered"] and not row["steady"]
    # Steadiness is judged from 7 s after healing (25 s) to the end of the run (30 s): no write at all there.
    assert row["unsteady"] == {"a": "5.0 s without a write", "b": "5.0 s without a write"}
    assert "fault 1: serving, recovered, NOT steady: a 5.0 s without a write; b 5.0 s" in markdown(run, [row])


def test_a_fault_that_finds_the_bank_already_refusing_is_neither_serving_nor_recovered():
    run = steady_run(gap=0, stops_at=9.0, windows=((5.0, 8.0), (20.0, 25.0)))
    first, second = figures(run)
    assert first["steady"] is False
    assert second["rate_before"] == 0 and not second["serving"] and not second["recovered"]
    # Healed at 25 s, the run ends at 30 s: too soon to judge steadiness, and it says so.
    assert second["steady"] is None
    assert "fault 2: NOT serving, NOT recovered, steadiness not judged" in markdown(run, [first, second])


def test_refusals_count_for_nothing_in_the_rates():
    run = steady_run(gap=0)
    for event in run["events"]:
        if event["finished_at"] < 10:
            event["outcome"] = "refused"
    row, = figures(run)
    assert row["rate_before"] == 0 and not row["serving"]

"""The partition lab's figures, from a run whose shape is known: what a reader of the results table is told."""
from lab.report import figures, markdown, timeline


def steady_run(gap):
    """Ten acknowledged operations a second for 30 s, none sent in the first `gap` seconds of a fault at 10-18 s
    (those sent during the gap are answered at its end); one 503 during the fault."""
    events = []
    for tenth in range(300):
        sent = tenth / 10
        if 10 <= sent < 10 + gap:
            continue
        events.append({"started_at": sent, "finished_at": sent + 0.05, "outcome": "ok", "kind": "deposit",
                       "failures": []})
    events.append({"started_at": 10.0, "finished_at": 10 + gap, "outcome": "ok", "kind": "deposit",
                   "failures": [[10.5, 503, "account_busy"]]})
    return {"schedule": "test", "violations": [], "unknown": 0, "operations": len(events), "events": events,
            "windows": [{"name": "leader isolated", "done": "the leader cut off", "start": 10.0, "heal": 18.0,
                         "fencing_refusals": 0, "late_writes": []}]}


def test_a_short_stall_serves_and_recovers():
    row, = figures(steady_run(gap=2))
    assert round(row["rate_before"]) == 10 and round(row["longest_stall_s"], 1) == 2.0
    assert round(row["first_success_s"], 1) == 2.0 and row["unavailable"] == {"account_busy": 1}
    assert row["serving"] and row["recovered"] and round(row["share_settled"], 1) == 1.0


def test_a_stall_past_five_seconds_is_reported_as_not_serving():
    run = steady_run(gap=7)
    row, = figures(run)
    assert not row["serving"] and row["recovered"] and round(row["longest_stall_s"], 1) == 7.0
    assert "leader isolated: NOT serving, recovered" in markdown(run, [row])
    # The chart counts from the first answer of the run (0.05 s here).
    assert [(name, round(start, 2), round(heal, 2)) for name, start, heal in timeline(run)["windows"]] == [
        ("leader isolated", 9.95, 17.95)]

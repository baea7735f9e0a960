"""What each fault cost, from the check's own events: rates of acknowledged writes around it, time to first success
and to full rate, whether every account was written steadily after it, the 503s by code; the results table and the
timeline chart. Refusals and unknown outcomes count for nothing: a bank that stops serving cannot look as if it
served, and a fault that finds the rate already at zero is neither serving nor recovered."""
import collections

BEFORE_SECONDS = 5          # the rate before a fault: acknowledged writes per second in the 5 s before it
SETTLE_SECONDS = 5          # the quorum side must serve half its rate from 5 s into a fault, full rate 5 s after
SERVING_SHARE = 0.5
FULL_SHARE = 0.8            # "full rate": a one-second window at 80% of the rate before, noise allowed for
# From this long after healing (a lease granted to a request whose caller is gone runs out by LOCK_TTL, 5 s, then a
# lock cycle's turn) until the next fault or the end of the run, every account is written, never this long apart
# (each is written many times a second). Between two faults that span is empty; after the last it is the run's tail.
STEADY_FROM_SECONDS = 7
STEADY_GAP_SECONDS = 2.5


def _acknowledged_write(event):
    return event["outcome"] == "ok" and event["kind"] in ("deposit", "withdrawal", "transfer")


def unsteady_between(run, since, until):
    """{account: how long it went without an acknowledged write from since to until}, for those over the gap."""
    unsteady = {}
    for account in run["accounts"]:
        times = sorted(e["finished_at"] for e in run["events"] if _acknowledged_write(e) and account in e["accounts"]
                       and since < e["finished_at"] <= until)
        gap = max(later - earlier for earlier, later in zip([since, *times], [*times, until]))
        if gap > STEADY_GAP_SECONDS:
            unsteady[account] = f"{gap:.1f} s without a write"
    return unsteady


def figures(run):
    """Per fault: its window and what the bank did in it (see the module's text)."""
    acknowledged = sorted(e["finished_at"] for e in run["events"] if _acknowledged_write(e))
    sent_and_acknowledged = sorted((e["started_at"], e["finished_at"]) for e in run["events"]
                                   if _acknowledged_write(e))
    failures = [failure for e in run["events"] for failure in e["failures"]]
    rows = []
    ends = [window["start"] for window in run["windows"][1:]] + [run["ended_at"]]
    for window, until in zip(run["windows"], ends):
        start, heal = window["start"], window["heal"]

        def count(since, until):
            return sum(1 for t in acknowledged if since <= t < until)

        before = count(start - BEFORE_SECONDS, start) / BEFORE_SECONDS
        # The first operation sent after the fault began to be acknowledged: how long until the bank served again.
        first = min((finished - start for sent, finished in sent_and_acknowledged if sent >= start), default=None)
        finished = [t for t in acknowledged if start <= t < heal]
        stall = max(later - earlier for earlier, later in zip([start, *finished], [*finished, heal]))
        late = count(start + SETTLE_SECONDS, heal) / max(heal - start - SETTLE_SECONDS, 1e-9)
        full_after = next((step / 10 for step in range(0, 101)
                           if count(heal + step / 10, heal + step / 10 + 1) >= max(FULL_SHARE * before, 1)), None)
        codes = collections.Counter(error or f"status {status}" for at, status, error in failures
                                    if start <= at < heal + SETTLE_SECONDS and status == 503)
        judged = until > heal + STEADY_FROM_SECONDS
        unsteady = unsteady_between(run, heal + STEADY_FROM_SECONDS, until) if judged else {}
        rows.append({**window, "rate_before": before,
                     "share_during": count(start, heal) / max(before * (heal - start), 1e-9),
                     "share_settled": late / max(before, 1e-9), "first_success_s": first, "longest_stall_s": stall,
                     "full_rate_after_s": full_after, "unavailable": dict(codes.most_common()),
                     "serving": before > 0 and late >= SERVING_SHARE * before,
                     "recovered": before > 0 and full_after is not None and full_after <= SETTLE_SECONDS,
                     "unsteady": unsteady, "steady": not unsteady if judged else None})
    return rows


def markdown(run, rows):
    lines = [f"# Partition lab: schedule `{run['schedule']}`", "",
             f"Checker: {run['operations']} acknowledged operations of {run['sent']} sent, "
             f"{len(run['violations'])} violations, {run['unknown']} unknown outcomes, "
             f"{sum(run.get('holds', {}).values())} holds settled ("
             + ", ".join(f"{state} {count}" for state, count in sorted(run.get("holds", {}).items())) + ")"
             + (": " + "; ".join(run["violations"]) if run["violations"] else "."), "",
             "| fault | writes before, /s | during, share | from 5 s in, share | first success, s | longest stall, s "
             "| full rate after heal, s | 503s by code | fencing refusals | stale holder's late write |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |"]
    for row in rows:
        first = "never" if row["first_success_s"] is None else f"{row['first_success_s']:.1f}"
        full = "not within 10" if row["full_rate_after_s"] is None else f"{row['full_rate_after_s']:.1f}"
        codes = ", ".join(f"{code} {n}" for code, n in row["unavailable"].items()) or "none"
        lines.append(f"| {row['name']} | {row['rate_before']:.0f} | {row['share_during']:.0%} "
                     f"| {row['share_settled']:.0%} | {first} | {row['longest_stall_s']:.1f} | {full} | {codes} "
                     f"| {row['fencing_refusals']:.0f} "
                     f"| {', '.join(str(late['status']) for late in row['late_writes']) or '-'} |")
    lines += ["", "Each fault:", ""] + [f"- {row['name']}: {row['done']}." for row in rows]
    lines += ["", f"Bounds: from {SETTLE_SECONDS} s into a fault at least {SERVING_SHARE:.0%} of the rate before; "
              f"within {SETTLE_SECONDS} s of healing a one-second window at {FULL_SHARE:.0%} of it; steady: from "
              f"{STEADY_FROM_SECONDS} s after healing until the next fault or the end of the run, no account "
              f"{STEADY_GAP_SECONDS} s without a write (not judged where that span is empty).", ""]
    lines += [f"- {row['name']}: {'serving' if row['serving'] else 'NOT serving'}, "
              f"{'recovered' if row['recovered'] else 'NOT recovered'}, "
              + {True: "steady", None: "steadiness not judged"}.get(row["steady"], "NOT steady: " + "; ".join(
                  f"{account} {why}" for account, why in row["unsteady"].items())) for row in rows]
    return "\n".join(lines) + "\n"


def timeline(run):
    """Per second of the run: acknowledged writes, failed answers, and the faults' windows, in seconds."""
    origin = min((e["finished_at"] for e in run["events"]), default=0.0)
    ok, failed = collections.Counter(), collections.Counter()
    for event in run["events"]:
        if _acknowledged_write(event):
            ok[int(event["finished_at"] - origin)] += 1
        for at, _, _ in event["failures"]:
            failed[int(at - origin)] += 1
    seconds = range(max([*ok, *failed, 0]) + 1)
    return {"acknowledged": [ok[s] for s in seconds], "failed": [failed[s] for s in seconds],
            "windows": [(w["name"], w["start"] - origin, w["heal"] - origin) for w in run["windows"]]}


def chart(series, schedule, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(12, 4.5))
    axes.plot(series["acknowledged"], label="acknowledged writes per second", color="tab:blue")
    axes.plot(series["failed"], label="failed answers per second", color="tab:red")
    for name, start, heal in series["windows"]:
        axes.axvspan(start, heal, color="0.85", zorder=0)
        axes.text(start, 0.97, name, transform=axes.get_xaxis_transform(), fontsize=7, va="top",
                  rotation=90 if len(series["windows"]) > 4 else 0)
    axes.set_xlabel("seconds into the run")
    axes.set_ylabel("operations")
    axes.set_title(f"Partition lab, schedule {schedule}: faults shaded")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)

"""What a check prints at its end: throughput, latency per kind of operation, the answers, the thefts tried, the
totals and every violation (client/check.py)."""
import collections

from shared.money import format_cents

KINDS = ("deposit", "withdrawal", "transfer", "balance", "hold", "capture", "release")
MOST_SHOWN = 50             # violations printed one by one; the rest are counted


def print_report(report, say, adversary):
    """Print what a check found: throughput, latency per kind, answers, thefts, totals and every violation."""
    count = len(report.events)
    say(f"{count} operations in {report.seconds:.2f} s: {count / max(report.seconds, 1e-9):.0f} op/s")
    say(f"{'operation':<11}{'count':>7}{'ok':>7}{'refused':>9}{'unknown':>9}{'p50 ms':>9}{'p95 ms':>9}"
        f"{'p99 ms':>9}")
    by_kind = collections.defaultdict(list)
    for event in report.events:
        if not event.theft:
            by_kind[event.kind].append(event)
    for kind in KINDS:
        events = by_kind.get(kind, [])
        if not events:
            continue
        outcomes = collections.Counter(e.outcome for e in events)
        times = sorted(e.seconds * 1000 for e in events)
        say(f"{kind:<11}{len(events):>7}{outcomes['ok']:>7}{outcomes['refused']:>9}{outcomes['unknown']:>9}"
            f"{percentile(times, 50):>9.1f}{percentile(times, 95):>9.1f}{percentile(times, 99):>9.1f}")
    statuses = collections.Counter(e.status for e in report.events)
    say("answers: " + ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items(), key=str)))
    thefts = collections.Counter((e.kind, e.status) for e in report.thefts)
    say(f"thefts tried by {adversary}: {len(report.thefts)} (" + ", ".join(
        f"{kind} {status or 'no answer'}: {n}" for (kind, status), n in sorted(thefts.items(), key=str)) + ")")
    retried = sum(1 for e in report.events if e.attempts > 1)
    say(f"retried with the same Idempotency-Key: {retried}; still unknown: {len(report.unknown)}")
    say(f"total: opening {format_cents(sum(report.opening.values()))}, final "
        f"{format_cents(sum(report.final.values()))}")
    entries = sum(len(statement) for statement in report.statements.values())
    say(f"history: {entries} entries in {len(report.statements)} statements checked")
    states = collections.Counter(hold["state"] if hold else "never placed" for hold in report.holds.values())
    say(f"holds: {len(report.holds)} settled (" + ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
        + ")")
    if report.violations:
        for violation in report.violations[:MOST_SHOWN]:
            say(f"VIOLATION  {violation}")
        if len(report.violations) > MOST_SHOWN:
            say(f"... and {len(report.violations) - MOST_SHOWN} more violations")
    else:
        say("no violations: every balance is its opening plus its acknowledged operations, the total is "
            "conserved by transfers and captures, no balance or available was ever negative; every hold was "
            "closed once, as its answers allow; every statement adds up without gaps to its final balance and "
            "holds each acknowledged write once, no refused one, nothing else, and debits by its owner only; "
            "every theft was answered as an unknown account or hold")


def percentile(sorted_values, percent):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * percent // 100))
    return sorted_values[int(rank) - 1]

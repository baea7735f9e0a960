"""What owners cost (#29), in one run: deposits on the code from just before accounts had owners and on this tree,
`make run`'s shape, stacks taken in turn (before, after, before, after) so that the machine's drift falls on both.

python -m bench.ownership_phase runs it alone and prints its table."""
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench.stack import Stack, checked_out, measure_spread, verdict
from harness.processes import ROOT

# The last revision before owners: BENCH_BEFORE_OWNERS overrides it.
BEFORE_OWNERS = os.environ.get("BENCH_BEFORE_OWNERS", "888d63f0118361d822bbe7626b06973ffa2eb00b")
ACCOUNTS = 2000
ROUNDS = 3
RUNS = [("deposit", 1), ("deposit", 32)]
MOST_COST = 0.05                # deposits after owners at least this much below before: the cost is too high


def measure_ownership(workdir, revision=BEFORE_OWNERS):
    """Rows as run_wrk's, with "label": "before" or "after", ROUNDS of each."""
    rows = []
    with checked_out(revision, Path(workdir) / "before-owners-tree") as tree:
        for round_number in range(ROUNDS):
            for label, root in (("before", tree), ("after", ROOT)):
                stack = Stack(Path(workdir) / f"owners-{label}-{round_number}", root=root)
                rows += measure_spread(stack, label, RUNS, ACCOUNTS)
    return {"revision": revision, "rows": rows}


def _median(rows, label, clients, field):
    return statistics.median(row[field] for row in rows if (row["label"], row["clients"]) == (label, clients))


def ownership_lines(result):
    rows = result["rows"]
    lines = ["", f"Deposits before and after owners, same run, `make run`'s shape: `before` is revision "
             f"{result['revision'][:10]} (the last without owners), `after` this tree; the median of {ROUNDS} "
             "stacks each, taken in turn.", "",
             "| clients | before op/s | after op/s | after/before | before p50 ms | after p50 ms | after errors |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for _, clients in RUNS:
        before, after = (_median(rows, label, clients, "ops_per_s") for label in ("before", "after"))
        lines.append(f"| {clients} | {before:.0f} | {after:.0f} | {after / before:.3f} "
                     f"| {_median(rows, 'before', clients, 'p50_ms'):.1f} "
                     f"| {_median(rows, 'after', clients, 'p50_ms'):.1f} "
                     f"| {sum(row['errors'] for row in rows if row['label'] == 'after'):.0f} |")
    return lines


def ownership_targets(result):
    rows, lines = result["rows"], []
    for _, clients in RUNS:
        ratio = _median(rows, "after", clients, "ops_per_s") / _median(rows, "before", clients, "ops_per_s")
        lines.append(f"deposits at {clients} clients after owners {ratio:.3f} of before (target: within "
                     f"{MOST_COST:.0%}): {verdict(ratio >= 1 - MOST_COST)}")
    return lines


def main():
    with tempfile.TemporaryDirectory(prefix="bank-bench-owners-") as workdir:
        result = measure_ownership(workdir)
    print("\n".join(ownership_lines(result) + [""] + ownership_targets(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The edge's cost: deposits and balances at 32 clients straight to the business servers and through the nginx
edge with TLS on every hop (client to edge, business server to the data edge), one after the other in one run."""
from pathlib import Path

from bench.stack import Stack, run_wrk, seed_accounts

PHASES = (("deposit", "spread-"), ("balance", "spread-"))
ACCOUNTS = 2000


def measure_edge(workdir):
    rows = []
    for label, edge in (("direct", False), ("edge", True)):
        stack = Stack(Path(workdir) / f"edge-{label}", edge=edge)
        try:
            seed_accounts(stack, "spread-", ACCOUNTS, "1000.00")
            for mode, prefix in PHASES:
                result = run_wrk(stack, mode, 32, stack.entry(), stack.client_token, prefix, ACCOUNTS)
                print(f"{label:>6} {mode:>9} 32 clients: {result['ops_per_s']:8.0f} op/s  p99 {result['p99_ms']:7.1f} "
                      f"ms  CPU {result['cpu_ms_per_op']:.2f} ms/op  errors {result['errors']}", flush=True)
                rows.append({"path": label, **result})
        finally:
            stack.stop()
    return rows


def edge_lines(rows):
    """The results table: each phase direct and through the edge, and the edge's share of the direct rate."""
    by = {(row["path"], row["mode"]): row for row in rows}
    lines = ["", "Through the edge (nginx, TLS on every hop, keep-alive upstreams) against straight to the business "
             "servers, same run, 32 clients; CPU counts nginx's too:", "",
             "| phase | direct op/s | edge op/s | edge / direct | direct p99 ms | edge p99 ms | direct CPU ms/op "
             "| edge CPU ms/op | edge errors |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mode, _ in PHASES:
        direct, edge = by[("direct", mode)], by[("edge", mode)]
        lines.append(f"| {mode} | {direct['ops_per_s']:.0f} | {edge['ops_per_s']:.0f} "
                     f"| {edge['ops_per_s'] / direct['ops_per_s']:.2f} | {direct['p99_ms']:.1f} | {edge['p99_ms']:.1f} "
                     f"| {direct['cpu_ms_per_op']:.2f} | {edge['cpu_ms_per_op']:.2f} | {edge['errors']} |")
    return lines

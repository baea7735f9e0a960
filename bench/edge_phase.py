"""The edge's cost: deposits and balances at 32 clients straight to the business servers and through the nginx
edge with TLS on every hop (client to edge, business server to the data edge), one after the other in one run."""
from pathlib import Path

from bench.stack import Stack, measure_spread

PHASES = ("deposit", "balance")
ACCOUNTS = 2000


def measure_edge(workdir):
    return [row for label, edge in (("direct", False), ("edge", True)) for row in measure_spread(
        Stack(Path(workdir) / f"edge-{label}", edge=edge), label, [(mode, 32) for mode in PHASES], ACCOUNTS)]


def edge_lines(rows):
    """The results table: each phase direct and through the edge, and the edge's share of the direct rate."""
    by = {(row["label"], row["mode"]): row for row in rows}
    lines = ["", "Through the edge (nginx, TLS on every hop, keep-alive upstreams) against straight to the business "
             "servers, same run, 32 clients; CPU counts nginx's too:", "",
             "| phase | direct op/s | edge op/s | edge / direct | direct p99 ms | edge p99 ms | direct CPU ms/op "
             "| edge CPU ms/op | edge errors |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for mode in PHASES:
        direct, edge = by[("direct", mode)], by[("edge", mode)]
        lines.append(f"| {mode} | {direct['ops_per_s']:.0f} | {edge['ops_per_s']:.0f} "
                     f"| {edge['ops_per_s'] / direct['ops_per_s']:.2f} | {direct['p99_ms']:.1f} | {edge['p99_ms']:.1f} "
                     f"| {direct['cpu_ms_per_op']:.2f} | {edge['cpu_ms_per_op']:.2f} | {edge['errors']} |")
    return lines

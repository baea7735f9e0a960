"""The cluster shape against one machine, in one run: deposits as `make run` serves them (one data server, its
journal, clients straight to the business servers) and through the whole cluster shape (the edge, TLS on every hop,
two data servers behind the data edge, a 3-member etcd cluster), one client and then 32.

python -m bench.cluster_phase runs it alone and prints its table."""
import sys
import tempfile
from pathlib import Path

from bench.stack import Stack, measure_spread, verdict
from harness.etcd_cluster import EtcdCluster

ACCOUNTS = 2000
CLIENTS = (1, 32)
MOST_ONE_CLIENT_RATIO = 3.0     # one client's deposit through the cluster shape, against make run's, at most


def measure_cluster(workdir):
    """Rows as run_wrk's, with "label": "one machine" or "cluster"."""
    cluster = EtcdCluster(Path(workdir) / "cluster-etcd").start()
    try:
        return [row for shape, options in (("one machine", {}),
                                           ("cluster", {"edge": True, "etcd": cluster, "data_count": 2}))
                for row in measure_spread(Stack(Path(workdir) / f"cluster-{shape.replace(' ', '-')}", **options),
                                          shape, [("deposit", clients) for clients in CLIENTS], ACCOUNTS)]
    finally:
        cluster.stop()


def cluster_lines(rows):
    """The results table: each client count on one machine and through the cluster shape, and their ratio."""
    by = {(row["label"], row["clients"]): row for row in rows}
    lines = ["", "Deposits through the cluster shape (edge, TLS on every hop, two data servers behind the data edge, "
             "3 etcd members) against `make run`'s one machine, same run:", "",
             "| clients | one machine op/s | cluster op/s | one machine p50 ms | cluster p50 ms | p50 ratio "
             "| cluster p99 ms | cluster errors |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for clients in CLIENTS:
        one, cluster = by[("one machine", clients)], by[("cluster", clients)]
        lines.append(f"| {clients} | {one['ops_per_s']:.0f} | {cluster['ops_per_s']:.0f} | {one['p50_ms']:.1f} "
                     f"| {cluster['p50_ms']:.1f} | {cluster['p50_ms'] / one['p50_ms']:.2f} | {cluster['p99_ms']:.1f} "
                     f"| {cluster['errors']} |")
    return lines


def cluster_targets(rows):
    """The cluster shape's target, as a line of the results' list of targets."""
    by = {(row["label"], row["clients"]): row for row in rows}
    ratio = by[("cluster", 1)]["p50_ms"] / by[("one machine", 1)]["p50_ms"]
    return [f"one client's deposit through the cluster shape: {ratio:.2f}× one machine's p50 (at most "
            f"{MOST_ONE_CLIENT_RATIO:.0f}×): {verdict(ratio <= MOST_ONE_CLIENT_RATIO)}"]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bank-bench-cluster-") as folder:
        measured = measure_cluster(folder)
        print("\n".join([*cluster_lines(measured), "", *cluster_targets(measured)]))
    sys.exit(0)

"""The etcd tier beside the embedded store, in the same run: a 3-member cluster on loopback with one and with two
data servers, the same deposit, hot-account and transfer phases, etcd's own count of the requests each operation
cost, the CPU of every process (etcd members included), a py-spy profile of the data servers, what etcd's
database holds after it all, and the cluster shape's soak with the statement store (soak_phase.py)."""
import concurrent.futures
import json
from pathlib import Path

import requests

from bench.chart import CLIENTS
from bench.profile import profile_while
from bench.soak_phase import COMPACTED_TO, DB_BYTES_IN_USE, measure_soak, soak_lines
from bench.stack import SECONDS, Stack, cpu_by_role, run_wrk, seed_accounts, verdict
from data.etcd.gateway import put
from harness.etcd_cluster import EtcdCluster

MODES = (("deposit", "spread-"), ("hot", "hot-"), ("transfer", "tr-"))
DATA_SERVERS = (1, 2)
DB_BYTES = "etcd_mvcc_db_total_size_in_bytes"
FLOOR_TXNS = 800        # one-put transactions sent to measure what etcd itself costs a transaction here
FLOOR_IN_FLIGHT = (1, 16)


def measure_etcd_tier(workdir, spread_accounts, transfer_accounts):
    """Rows as run_wrk's, with "data_servers"; the data servers' profile at 32 clients' deposits; etcd's size."""
    accounts = {"spread-": spread_accounts, "hot-": 1, "tr-": transfer_accounts}
    cluster = EtcdCluster(Path(workdir) / "etcd").start()
    rows, profile = [], None
    try:
        floor = {in_flight: _transaction_floor(cluster, in_flight) for in_flight in FLOOR_IN_FLIGHT}
        for data_count in DATA_SERVERS:
            stack = Stack(Path(workdir) / f"etcd-tier-{data_count}", etcd=cluster, data_count=data_count)
            try:
                if data_count == DATA_SERVERS[0]:
                    seed_accounts(stack, "spread-", spread_accounts, "1000.00")
                    seed_accounts(stack, "tr-", transfer_accounts, "1000000.00")
                for mode, prefix in MODES:
                    for clients in CLIENTS:
                        result = run_wrk(stack, mode, clients, stack.entry(), stack.client_token, prefix,
                                         accounts[prefix])
                        print(f"etcd, {data_count} data: {mode:>9} {clients:>4} clients: {result['ops_per_s']:8.0f} "
                              f"op/s  p99 {result['p99_ms']:7.1f} ms  errors {result['errors']}  CPU "
                              f"{result['cpu_ms_per_op']:.2f} ms/op  etcd txn/op "
                              f"{result['etcd_calls_per_op']['etcd Txn']:.2f}", flush=True)
                        rows.append({"data_servers": data_count, **result})
                if data_count == DATA_SERVERS[0]:
                    workers = [pid for server in stack.data_servers for pid in server.worker_pids()]
                    _, profile = profile_while(workers, SECONDS, lambda stack=stack: run_wrk(
                        stack, "deposit", 32, stack.entry(), stack.client_token, "spread-", spread_accounts))
            finally:
                stack.stop()
        size = _database_size(cluster)
    finally:
        cluster.stop()
    return {"rows": rows, "profile": profile, "size": size, "floor": floor,
            "soak": measure_soak(workdir)}


def _transaction_floor(cluster, in_flight):
    """etcd's own CPU (every member's) per transaction of one small put, in_flight of them at a time, sent to the
    leader: the least a transaction costs on this machine, whatever sends it."""
    leader = cluster.client_url(cluster.leader())

    def send(sender):
        with requests.Session() as session:
            session.trust_env = False
            for i in range(FLOOR_TXNS // in_flight):
                body = {"success": [put(f"floor/{in_flight}/{sender}/{i}", "x" * 100)]}
                session.post(f"{leader}/v3/kv/txn", data=json.dumps(body), timeout=10).raise_for_status()

    roles = {"etcd": cluster.pids()}
    before = cpu_by_role(roles)["etcd"]
    with concurrent.futures.ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(send, range(in_flight)))
    cost = (cpu_by_role(roles)["etcd"] - before) * 1000 / (FLOOR_TXNS // in_flight * in_flight)
    print(f"etcd floor: one-put transactions, {in_flight} in flight: {cost:.2f} ms of etcd CPU each", flush=True)
    return cost


def _database_size(cluster):
    members = [cluster.metrics(name) for name in cluster.names]
    return {"db_bytes": max(m.get(DB_BYTES, 0) for m in members),
            "db_bytes_in_use": max(m.get(DB_BYTES_IN_USE, 0) for m in members),
            "compacted_to": max(m.get(COMPACTED_TO, 0) for m in members)}


def etcd_lines(etcd, operations):
    """The results table beside the embedded store's rows of the same run, then the profile."""
    embedded = {(r["mode"], r["clients"]): r for r in operations}
    methods = list(etcd["rows"][0]["etcd_calls_per_op"])
    lines = ["", "## The etcd tier", "",
             "A 3-member etcd cluster on this machine's loopback (the members share its cores with everything else), "
             "one or two data servers (DATA_STORE=etcd), the same three business servers and load; the ratio is to "
             "the embedded store's row of the same phase and clients above. etcd requests are etcd's own counts "
             "(every member's gRPC requests, which its JSON gateway makes) per operation; CPU counts every process, "
             "the etcd members included.", "",
             "| phase | data servers | clients | op/s | ratio to embedded | p50 ms | p99 ms | errors | "
             + " | ".join(f"{m.split()[1]}/op" for m in methods) + " | CPU ms/op | of which etcd | etcd ms/Txn |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | " + "---: | " * len(methods)
             + "---: | ---: | ---: |"]
    for r in etcd["rows"]:
        ratio = r["ops_per_s"] / embedded[(r["mode"], r["clients"])]["ops_per_s"]
        calls = " | ".join(f"{r['etcd_calls_per_op'][m]:.2f}" for m in methods)
        etcd_cpu, txns = r["cpu_ms_per_op_by_role"].get("etcd", 0), r["etcd_calls_per_op"]["etcd Txn"]
        lines.append(f"| {r['mode']} | {r['data_servers']} | {r['clients']} | {r['ops_per_s']:.0f} | {ratio:.2f} "
                     f"| {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {calls} | {r['cpu_ms_per_op']:.2f} "
                     f"| {etcd_cpu:.2f} | {etcd_cpu / txns if txns else 0:.2f} |")
    floor = etcd["floor"]
    lines += ["", "What etcd itself costs a transaction on this machine, whatever sends it: a transaction of one "
              "100-byte put, sent straight to the leader, took "
              + " and ".join(f"{floor[n]:.2f} ms of the members' CPU with {n} in flight" for n in FLOOR_IN_FLIGHT)
              + " (the last column above is the same for the tier's own lock and commit transactions, which carry "
              "every account and record of the batches they group)."]
    size, operations_done = etcd["size"], sum(r["ops_per_s"] * SECONDS for r in etcd["rows"])
    per_op, fastest = size["db_bytes_in_use"] / operations_done, max(r["ops_per_s"] for r in etcd["rows"])
    lines += ["", f"etcd's database after the phases (before its first compaction): {size['db_bytes'] / 1e6:.1f} MB "
              f"on disk, {size['db_bytes_in_use'] / 1e6:.1f} MB in use: {per_op:.0f} bytes per operation of history "
              f"and keys. etcd compacts every five minutes (revision mode): at the fastest rate here, {fastest:.0f} "
              f"op/s, five minutes of history is {per_op * fastest * 300 / 2 ** 20:.0f} MiB against the 1 GiB quota of "
              "the cluster the bench and tests start."]
    lines += soak_lines(etcd["soak"])
    profile = etcd["profile"]
    if profile:
        lines += ["", f"Where a data server's CPU goes at 32 clients' deposits (py-spy, {profile['samples']} samples "
                  "of the thread holding the GIL): the functions with the most samples of their own, and this "
                  "project's functions with their callees' samples included.", "",
                  "| own time | share | with callees | share |", "| --- | ---: | --- | ---: |"]
        for (own, own_share), (inclusive, inclusive_share) in zip(profile["own"], profile["inclusive"]):
            lines.append(f"| `{own}` | {own_share:.0%} | `{inclusive}` | {inclusive_share:.0%} |")
    return lines


def etcd_targets(etcd, operations):
    """Issue #18's targets, each reached or not, on the run's rows."""
    embedded = {(r["mode"], r["clients"]): r for r in operations}
    rows = {(r["mode"], r["data_servers"], r["clients"]): r for r in etcd["rows"]}
    lines = []
    for mode, goal in (("deposit", 0.6), ("transfer", 0.5), ("hot", 0.5)):
        for data_count in DATA_SERVERS:
            ratio = rows[(mode, data_count, 32)]["ops_per_s"] / embedded[(mode, 32)]["ops_per_s"]
            lines.append(f"etcd tier, {data_count} data server(s): {mode} at 32 clients {ratio:.2f}x the embedded "
                         f"store (target {goal}): {verdict(ratio >= goal)}")
    for data_count in DATA_SERVERS:
        cpu = rows[("deposit", data_count, 32)]["cpu_ms_per_op"]
        lines.append(f"etcd tier, {data_count} data server(s): CPU per deposit at 32 clients, every process, {cpu:.2f} "
                     f"ms (target 4): {verdict(cpu <= 4)}")
    errors = sum(r["errors"] for r in etcd["rows"] if r["clients"] == 128)
    lines.append(f"etcd tier at 128 clients: {errors} errors (target 0): {verdict(errors == 0)}")
    lines.append("etcd compacted its revisions under load (etcd_debugging_mvcc_compact_revision above 0): "
                 f"{verdict(compaction_seen(etcd['soak']))}")
    return lines


def compaction_seen(compaction):
    """Whether etcd compacted its history while the load ran (its own count of the revision it compacted to)."""
    return any(sample[2] > 0 for sample in compaction["samples"])

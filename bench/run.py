"""make bench: the system's throughput, latency and scale, against the data server's own capacity in one run.

Results go to bench/results/ (latest.md, latest.json, throughput.png). BENCH_SECONDS sets each measurement's
length (default 5).
"""
import concurrent.futures
import datetime
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.chart import CLIENTS, chart
from bench.cluster_phase import cluster_lines, cluster_targets, measure_cluster
from bench.edge_phase import edge_lines, measure_edge
from bench.etcd_phase import etcd_lines, etcd_targets, measure_etcd_tier
from bench.holds_phase import holds_lines, holds_targets, measure_holds
from bench.ownership_phase import measure_ownership, ownership_lines, ownership_targets
from bench.peer_phase import measure_peer, peer_lines, peer_targets
from bench.stack import SECONDS, Stack, checked_out, run_wrk, seed_accounts, verdict
from data.embedded.journal import SNAPSHOT_CHUNK_ITEMS, Journal
from harness.processes import ROOT, Server, example_settings, free_port, proc_status

SPREAD_ACCOUNTS = 10_000
TRANSFER_ACCOUNTS = 10
RESULTS = ROOT / "bench" / "results"
SCALE_ACCOUNTS = (10_000, 100_000, 1_000_000)
COMPACTION_ACCOUNTS = 1_000_000
# The code before one batcher per business server (#20), each worker batching alone, to show what the batcher
# gives: BENCH_BEFORE overrides it.
BEFORE_REVISION = os.environ.get("BENCH_BEFORE", "1d619690676dcadfb4e70f6899e796ee521fc174")


def phases(stack, spread_accounts):
    """Each phase as (mode, hosts, token, account prefix, accounts): the data server's baseline, then the bank's."""
    business = [server.url for server in stack.businesses]
    return [
        ("baseline", [stack.data.url], stack.data_token, "spread-", spread_accounts),
        ("deposit", business, stack.client_token, "spread-", spread_accounts),
        ("hot", business, stack.client_token, "hot-", 1),
        ("transfer", business, stack.client_token, "tr-", TRANSFER_ACCOUNTS),
        ("balance", business, stack.client_token, "spread-", spread_accounts),
    ]


def measure_operations(stack):
    seed_accounts(stack, "spread-", SPREAD_ACCOUNTS, "1000.00")
    seed_accounts(stack, "tr-", TRANSFER_ACCOUNTS, "1000000.00")
    results = []
    for mode, hosts, token, prefix, accounts in phases(stack, SPREAD_ACCOUNTS):
        for clients in CLIENTS:
            result = run_wrk(stack, mode, clients, hosts, token, prefix, accounts)
            print(f"{mode:>9} {clients:>4} clients: {result['ops_per_s']:8.0f} op/s  p50 {result['p50_ms']:7.1f} ms  "
                  f"p99 {result['p99_ms']:7.1f} ms  errors {result['errors']}  "
                  f"data calls/op {result['data_calls_per_op']:.2f}", flush=True)
            results.append(result)
    return results


def measure_before_after(workdir, revision=BEFORE_REVISION):
    """The 32-client phases on `revision`'s code and on this tree's, one after the other in this run."""
    rows = []
    with checked_out(revision, Path(workdir) / "before-tree") as tree:
        for label, root in (("before", tree), ("after", ROOT)):
            stack = Stack(Path(workdir) / f"compare-{label}", root=root)
            try:
                seed_accounts(stack, "spread-", 2000, "1000.00")
                seed_accounts(stack, "tr-", TRANSFER_ACCOUNTS, "1000000.00")
                for mode, hosts, token, prefix, accounts in phases(stack, 2000):
                    result = run_wrk(stack, mode, 32, hosts, token, prefix, accounts)
                    print(f"{label:>6} {mode:>9} 32 clients: {result['ops_per_s']:8.0f} op/s  "
                          f"p99 {result['p99_ms']:7.1f} ms  CPU {result['cpu_ms_per_op']:.2f} ms/op", flush=True)
                    rows.append({"code": label, **result})
            finally:
                stack.stop()
    return {"revision": revision, "rows": rows}


def measure_business_scale(workdir):
    scale = []
    for count in (1, 2, 3):
        stack = Stack(Path(workdir) / f"scale{count}", count)
        try:
            seed_accounts(stack, "spread-", 1000, "1.00")
            result = run_wrk(stack, "deposit", 32, [s.url for s in stack.businesses], stack.client_token, "spread-",
                             1000)
        finally:
            stack.stop()
        print(f"{count} business servers, 32 clients, deposits: {result['ops_per_s']:.0f} op/s", flush=True)
        scale.append({"business_servers": count, **result})
    return scale


def measure_data_server_size(workdir):
    sizes = []
    for accounts in SCALE_ACCOUNTS:
        folder = Path(workdir) / f"size{accounts}"
        folder.mkdir(parents=True)
        journal_path = folder / "bank.journal"
        write_snapshot_journal(journal_path, accounts).close()
        settings = example_settings()
        env = {**settings, "DATA_JOURNAL": str(journal_path), "LOG_LEVEL": "WARNING",
               "DATA_TOKENS": f"b1:{settings['DATA_TOKEN_B1']}"}
        server = Server("data", "data/gunicorn.conf.py", free_port(), env, folder)
        started = time.perf_counter()
        server.start(wait=False)
        try:
            server.wait_healthy(timeout=300)
            recovery = time.perf_counter() - started
            resident_mb = int(proc_status(server.worker_pids()[0])["VmRSS"].split()[0]) / 1024
            assert requests.get(f"{server.url}/health", timeout=5).json()["accounts"] == accounts
        finally:
            server.stop()
        size_mb = journal_path.stat().st_size / 1e6
        print(f"{accounts:>9} accounts: resident {resident_mb:.0f} MB, start and recovery {recovery:.1f} s, "
              f"journal {size_mb:.0f} MB", flush=True)
        sizes.append({"accounts": accounts, "resident_mb": resident_mb, "recovery_s": recovery, "journal_mb": size_mb})
    return sizes


def write_snapshot_journal(path, accounts):
    """A journal that holds a snapshot of `accounts` accounts of 100.00 each; returned open, to append to."""
    journal = Journal(str(path), "no", background=lambda job: job())
    list(journal.replay())
    journal.open()
    journal.start_compaction(_snapshot(accounts))
    return journal


def measure_compaction_stall(workdir, accounts=COMPACTION_ACCOUNTS, writers=8):
    """Writes at the data server while it compacts a journal of `accounts` accounts, and in as long a time after.

    The journal is a snapshot plus history just short of twice its size, so the first writes start a compaction.
    """
    folder = Path(workdir) / "compaction"
    folder.mkdir(parents=True)
    journal_path = folder / "bank.journal"
    journal = write_snapshot_journal(journal_path, accounts)
    threshold = 2 * journal_path.stat().st_size
    start = 0
    while journal_path.stat().st_size < threshold - 3000:
        journal.append({"t": "commit", "w": {f"acc-{i}": 200_00 for i in range(start, start + 100)}})
        start = (start + 100) % accounts
    journal.close()
    settings = example_settings()
    token = settings["DATA_TOKEN_B1"]
    env = {**settings, "DATA_JOURNAL": str(journal_path), "LOG_LEVEL": "WARNING", "DATA_TOKENS": f"b1:{token}"}
    server = Server("data", "data/gunicorn.conf.py", free_port(), env, folder).start(wait=False)
    try:
        server.wait_healthy(timeout=300)
        writes, health = _write_through_a_compaction(server.url, token, accounts, writers)
    finally:
        server.stop()
    finished = writes["finished"]
    during = [ms for at, ms in writes["latencies"] if at <= finished]
    after = [ms for at, ms in writes["latencies"] if at > finished]
    result = {"accounts": accounts, "journal_mb": threshold / 1e6, "compaction_s": finished,
              "copy_ms": health["compaction_copy_ms"], "switch_ms": health["compaction_switch_ms"],
              "slowest_write_during_ms": max(during), "slowest_write_after_ms": max(after, default=0.0),
              "p50_write_ms": sorted(ms for _, ms in writes["latencies"])[len(writes["latencies"]) // 2],
              "writes": len(writes["latencies"])}
    print(f"compaction at {accounts:,} accounts: {result['compaction_s']:.1f} s, copy {result['copy_ms']:.0f} ms, "
          f"switch {result['switch_ms']:.0f} ms; slowest write during {result['slowest_write_during_ms']:.0f} ms, "
          f"after {result['slowest_write_after_ms']:.0f} ms", flush=True)
    return result


def _write_through_a_compaction(url, token, accounts, writers, limit_s=120):
    """Lock-and-commit cycles from `writers` threads until a compaction has finished and as long again after."""
    headers = {"Authorization": f"Bearer {token}"}
    latencies, started = [], time.perf_counter()
    finished = stop_at = None

    def write(index):
        with requests.Session() as session:
            n = index
            while time.perf_counter() < (stop_at or started + limit_s):
                account = f"acc-{n % accounts}"
                began = time.perf_counter()
                lock = session.post(f"{url}/getLock/b1/{account}", headers=headers, json={"wait_ms": 5000},
                                    timeout=30).json()
                session.post(f"{url}/commit/b1", headers=headers, timeout=30, json={
                    "writes": [{"account": account, "amount": "1.00", "token": lock["token"]}],
                    "unlock": True}).raise_for_status()
                latencies.append((began - started, (time.perf_counter() - began) * 1000))
                n += writers * 7919

    with concurrent.futures.ThreadPoolExecutor(writers) as pool:
        running = [pool.submit(write, i) for i in range(writers)]
        while finished is None and time.perf_counter() < started + limit_s:
            health = requests.get(f"{url}/health", timeout=30).json()
            if health["compactions"]:
                finished = time.perf_counter() - started
                stop_at = time.perf_counter() + finished
            time.sleep(0.05)
        stop_at = stop_at or time.perf_counter()
        for future in running:
            future.result()
    if finished is None:
        raise RuntimeError(f"no compaction finished within {limit_s} s")
    return {"latencies": latencies, "finished": finished}, health


def _snapshot(accounts):
    yield {"t": "fence", "upto": 10_000}
    for start in range(0, accounts, SNAPSHOT_CHUNK_ITEMS):
        yield {"t": "accounts",
               "a": {f"acc-{i}": 100_00 for i in range(start, min(start + SNAPSHOT_CHUNK_ITEMS, accounts))}}


def machine():
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    return (f"{os.cpu_count()} cores ({model}), {memory_gb:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}")


def write_results(operations, scale, sizes, compaction, comparison, edge, etcd, peer, history, cluster, owners,
                  holds):
    RESULTS.mkdir(parents=True, exist_ok=True)
    baseline = {r["clients"]: r["ops_per_s"] for r in operations if r["mode"] == "baseline"}
    for result in operations:
        result["ratio"] = result["ops_per_s"] / baseline[result["clients"]]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    (RESULTS / "latest.json").write_text(json.dumps(
        {"when": when, "machine": machine(), "seconds": SECONDS, "operations": operations, "scale": scale,
         "sizes": sizes, "compaction": compaction, "before_after": comparison, "edge": edge, "etcd": etcd,
         "peer": peer, "history": history, "cluster": cluster, "owners": owners, "holds": holds},
        indent=2))
    settings = example_settings()
    lines = [f"# Benchmark, {when}", "", f"Machine: {machine()}. Each figure: wrk for {SECONDS:.0f} s; the "
             "stack as `make run` starts it (journal on, fsync always, 3 business servers of "
             f"{settings['BUSINESS_WORKERS']} workers).", "",
             "| phase | clients | op/s | ratio to baseline | p50 ms | p95 ms | p99 ms | errors | data calls/op "
             "| server CPU ms/op | wrk CPU | servers CPU |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in operations:
        lines.append(f"| {r['mode']} | {r['clients']} | {r['ops_per_s']:.0f} | {r['ratio']:.2f} | {r['p50_ms']:.1f} "
                     f"| {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['data_calls_per_op']:.2f} "
                     f"| {r['cpu_ms_per_op']:.2f} | {r['generator_cpu']:.0%} | {r['servers_cpu']:.0%} |")
    lines += ["", "CPU shares are of all cores of the machine over the measurement; server CPU ms/op is the CPU "
              "time of every server process (data and business, masters and workers) per operation.", "",
              "| business servers | deposits at 32 clients, op/s |", "| ---: | ---: |"]
    lines += [f"| {s['business_servers']} | {s['ops_per_s']:.0f} |" for s in scale]
    lines += ["", "| accounts | data server resident MB | start and journal recovery s | journal MB |",
              "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {s['accounts']:,} | {s['resident_mb']:.0f} | {s['recovery_s']:.1f} | {s['journal_mb']:.0f} |"
              for s in sizes]
    c = compaction
    lines += ["", f"Compaction of a {c['journal_mb']:.0f} MB journal at {c['accounts']:,} accounts, under writes from "
              f"8 threads: {c['compaction_s']:.1f} s in the background; it held writes back for the copy of the maps "
              f"({c['copy_ms']:.0f} ms) and the switch to the new file ({c['switch_ms']:.0f} ms). Slowest write "
              f"while it ran: {c['slowest_write_during_ms']:.0f} ms; in as long a time after it: "
              f"{c['slowest_write_after_ms']:.0f} ms; median write {c['p50_write_ms']:.1f} ms."]
    lines += ["", f"Before and after, in this run, at 32 clients: `before` is revision {comparison['revision'][:10]} "
              "(each business worker batching alone, before one batcher per server, #20; its own .env.example), "
              "`after` this tree.", "",
              "| phase | before op/s | after op/s | before ratio | after ratio | before p99 ms | after p99 ms "
              "| before CPU ms/op | after CPU ms/op | before data calls/op | after data calls/op |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    compared = {(r["code"], r["mode"]): r for r in comparison["rows"]}
    for mode in ("deposit", "hot", "transfer", "balance"):
        before, after = compared[("before", mode)], compared[("after", mode)]
        base_before, base_after = compared[("before", "baseline")], compared[("after", "baseline")]
        lines.append(f"| {mode} | {before['ops_per_s']:.0f} | {after['ops_per_s']:.0f} "
                     f"| {before['ops_per_s'] / base_before['ops_per_s']:.2f} "
                     f"| {after['ops_per_s'] / base_after['ops_per_s']:.2f} | {before['p99_ms']:.1f} "
                     f"| {after['p99_ms']:.1f} | {before['cpu_ms_per_op']:.2f} | {after['cpu_ms_per_op']:.2f} "
                     f"| {before['data_calls_per_op']:.2f} | {after['data_calls_per_op']:.2f} |")
    per_entry = history["bytes"] / max(history["entries"], 1)
    lines += ["", f"History: after the phases above, the data server's history file held {history['entries']:,} "
              f"entries in {history['bytes'] / 1e6:.1f} MB, {per_entry:.0f} bytes an entry (SQLite, beside the "
              "journal)."]
    lines += edge_lines(edge)
    lines += cluster_lines(cluster)
    lines += ownership_lines(owners)
    lines += holds_lines(holds)
    lines += etcd_lines(etcd, operations)
    lines += peer_lines(peer, operations)
    reached = (targets(operations, sizes) + etcd_targets(etcd, operations) + peer_targets(peer, operations)
               + cluster_targets(cluster) + ownership_targets(owners) + holds_targets(holds))
    lines += ["", "## Targets", ""] + [f"- {line}" for line in reached]
    (RESULTS / "latest.md").write_text("\n".join(lines) + "\n")
    chart(operations, RESULTS / "throughput.png", peer)


def targets(operations, sizes):
    at = {(r["mode"], r["clients"]): r for r in operations}

    lines = []
    for mode, goal in (("deposit", 1.0), ("hot", 1.5), ("transfer", 0.5)):
        ratio = at[(mode, 32)]["ratio"]
        lines.append(f"{mode} at 32 clients, ratio to baseline {ratio:.2f} (target {goal:.2f}): "
                     f"{verdict(ratio >= goal)}")
    errors = at[("transfer", 128)]["errors"]
    lines.append(f"transfers at 128 clients: {errors} errors (target 0): {verdict(errors == 0)}")
    cpu = at[("deposit", 32)]["cpu_ms_per_op"]
    lines.append(f"server CPU per deposit at 32 clients {cpu:.2f} ms (target 2): {verdict(cpu <= 2)}")
    for mode in ("deposit", "hot", "transfer", "balance"):
        p99, p50 = at[(mode, 32)]["p99_ms"], at[(mode, 1)]["p50_ms"]
        lines.append(f"{mode} p99 at 32 clients {p99:.1f} ms is {p99 / p50:.1f}x its p50 at 1 client (target 10x): "
                     f"{verdict(p99 <= 10 * p50)}")
    largest = sizes[-1]
    lines.append(f"{largest['accounts']:,} accounts: {largest['resident_mb']:.0f} MB resident (target 300), recovery "
                 f"{largest['recovery_s']:.1f} s (target 10): "
                 f"{verdict(largest['resident_mb'] < 300 and largest['recovery_s'] < 10)}")
    return lines


def history_size(workdir):
    """The embedded store's history file after the phases: its entries and bytes (the data server stopped)."""
    path = Path(workdir) / "bench.journal.history"
    with sqlite3.connect(path) as db:
        entries = db.execute("SELECT count(*) FROM entries").fetchone()[0]
    size = sum(made.stat().st_size for made in Path(workdir).glob("bench.journal.history*"))
    print(f"history: {entries:,} entries in {size / 1e6:.1f} MB, {size / max(entries, 1):.0f} bytes each", flush=True)
    return {"entries": entries, "bytes": size}


def main():
    with tempfile.TemporaryDirectory(prefix="bank-bench-") as workdir:
        stack = Stack(workdir)
        try:
            operations = measure_operations(stack)
        finally:
            stack.stop()
        history = history_size(workdir)
        etcd = measure_etcd_tier(workdir, SPREAD_ACCOUNTS, TRANSFER_ACCOUNTS)
        peer = measure_peer(workdir, SPREAD_ACCOUNTS, TRANSFER_ACCOUNTS)
        scale = measure_business_scale(workdir)
        sizes = measure_data_server_size(workdir)
        compaction = measure_compaction_stall(workdir)
        comparison = measure_before_after(workdir)
        edge = measure_edge(workdir)
        cluster = measure_cluster(workdir)
        owners = measure_ownership(workdir)
        holds = measure_holds(workdir)
    write_results(operations, scale, sizes, compaction, comparison, edge, etcd, peer, history, cluster, owners,
                  holds)
    print((RESULTS / "latest.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What every benchmark phase stands on: a stack of real servers, the load (wrk) and what a measurement counts."""
import concurrent.futures
import contextlib
import json
import os
import resource
import subprocess
import time
from pathlib import Path

import requests

from harness.edge import Edge
from harness.processes import ROOT, Server, example_settings, free_port, proc_stat, stop_all
from ops.certs import make_all
from shared.settings import names_by_token

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
TICKS = os.sysconf("SC_CLK_TCK")
# etcd's own count of the requests it took, by gRPC method (the JSON gateway calls them).
ETCD_REQUESTS = 'grpc_server_msg_received_total{grpc_method="%s",grpc_service="etcdserverpb.%s",grpc_type="%s"}'
ETCD_METHODS = (("Txn", "KV", "unary"), ("Range", "KV", "unary"), ("LeaseGrant", "Lease", "unary"),
                ("LeaseRevoke", "Lease", "unary"), ("LeaseKeepAlive", "Lease", "bidi_stream"),
                ("LeaseTimeToLive", "Lease", "unary"))


class Stack:
    """Data servers and some business servers, started with .env.example's settings.

    root: the source tree the servers run from (another revision's, for a before/after comparison).
    edge: the cluster shape's edge in front of both tiers, TLS on every hop (certificates in workdir).
    etcd: an EtcdCluster that `data_count` data servers keep the bank in (DATA_STORE=etcd); else one data server
    with its journal. data_env: more of the data servers' settings (a statement store's, say).
    """

    def __init__(self, workdir, business_count=3, root=ROOT, edge=False, etcd=None, data_count=1, data_env=None):
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        settings = example_settings(root)
        tokens = {f"b{i}": settings[f"DATA_TOKEN_B{i}"] for i in (1, 2, 3)}
        store = ({"DATA_JOURNAL": str(workdir / "bench.journal")} if etcd is None else
                 {"DATA_STORE": "etcd", "ETCD_ENDPOINTS": ",".join(etcd.endpoints)})
        data_env = {**settings, **store, "LOG_LEVEL": "WARNING",
                    "DATA_TOKENS": ",".join(f"{b}:{t}" for b, t in tokens.items()), **(data_env or {})}
        self.etcd = etcd
        self.data_servers = [Server(f"data{i}", "data/gunicorn.conf.py", free_port(), data_env, workdir, root).start()
                             for i in range(1, data_count + 1)]
        self.data = self.data_servers[0]
        ports = [free_port() for _ in range(business_count)]
        self.edge, data_urls, tls = None, ",".join(server.url for server in self.data_servers), {}
        if edge:
            make_all(workdir / "tls", ["127.0.0.1"])
            self.edge = Edge({"EDGE_PORT": str(free_port()), "DATA_EDGE_PORT": str(free_port()),
                              "EDGE_TLS_CA": str(workdir / "tls" / "ca.pem"),
                              "EDGE_TLS_CERT": str(workdir / "tls" / "edge.pem"),
                              "EDGE_TLS_KEY": str(workdir / "tls" / "edge-key.pem"),
                              "EDGE_RUN_DIR": str(workdir / "nginx"),
                              "EDGE_BUSINESS_UPSTREAMS": ",".join(f"127.0.0.1:{port}" for port in ports),
                              "EDGE_DATA_UPSTREAMS": ",".join(f"127.0.0.1:{server.port}"
                                                              for server in self.data_servers),
                              "EDGE_RATE_LIMIT": "100000", "EDGE_RATE_BURST": "100000"}, workdir).start()
            data_urls = self.edge.data_url
        self.businesses = []
        for i, port in zip(range(1, business_count + 1), ports):
            if edge:
                tls = {"DATA_TLS_CA": str(workdir / "tls" / "ca.pem"),
                       "DATA_TLS_CERT": str(workdir / "tls" / f"business-b{i}.pem"),
                       "DATA_TLS_KEY": str(workdir / "tls" / f"business-b{i}-key.pem")}
            # DATA_URL too, for a revision from before DATA_URLS in the before/after comparison.
            env = {**settings, "BUSINESS_ID": f"b{i}", "DATA_TOKEN": tokens[f"b{i}"], "DATA_URLS": data_urls,
                   "DATA_URL": self.data.url, "LOG_LEVEL": "WARNING", **tls}
            self.businesses.append(Server(f"business{i}", "business/gunicorn.conf.py", port, env,
                                          workdir, root).start(wait=False))
        for business in self.businesses:
            business.wait_healthy()
        self.data_token, self.client_token = tokens["b1"], settings["CLIENT_TOKEN"]
        self.client_name = names_by_token(settings["CLIENT_TOKENS"], "CLIENT_TOKENS")[self.client_token]

    def entry(self):
        """Where clients send their requests: the edge, or every business server."""
        return [self.edge.url] if self.edge else [server.url for server in self.businesses]

    def servers(self):
        return [*self.data_servers, *self.businesses, *([self.edge] if self.edge else [])]

    def pids_by_role(self):
        """Every process of the stack, etcd members included, by what it is: {"data": [pid, ...], ...}."""
        roles = {"data": self.data_servers, "business": self.businesses, "edge": [self.edge] if self.edge else []}
        pids = {role: [pid for server in servers for pid in server.pids()]
                for role, servers in roles.items()}
        pids["etcd"] = self.etcd.pids() if self.etcd else []
        return {role: found for role, found in pids.items() if found}

    def counters(self):
        """What the stack has counted so far: requests at the data servers and, on etcd, etcd's by method."""
        counted = {"data_calls": sum(requests.get(f"{server.url}/health", timeout=5).json()["requests"]
                                     for server in self.data_servers)}
        if self.etcd:
            members = [self.etcd.metrics(name) for name in self.etcd.names]
            for method, service, kind in ETCD_METHODS:
                counted[f"etcd {method}"] = sum(m.get(ETCD_REQUESTS % (method, service, kind), 0.0) for m in members)
        return counted

    def stop(self):
        stop_all(self.servers())


def cpu_by_role(pids_by_role):
    """CPU seconds each role's processes have used."""
    totals = {}
    for role, pids in pids_by_role.items():
        for pid in pids:
            fields = proc_stat(pid)
            if fields:
                totals[role] = totals.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / TICKS
    return totals


def run_wrk(stack, mode, clients, hosts, token, prefix, accounts, seconds=None):
    """One wrk run of `seconds` (BENCH_SECONDS if None) and what it measured."""
    seconds = seconds or SECONDS
    threads = 1 if clients == 1 else min(clients, 8)
    env = {**os.environ, "BENCH_MODE": mode, "BENCH_TOKEN": token, "BENCH_PREFIX": prefix,
           "BENCH_ACCOUNTS": str(accounts), "BENCH_HOSTS": ",".join(h.split("//")[1] for h in hosts)}
    pids = stack.pids_by_role()
    counted_before, cpu_before = stack.counters(), cpu_by_role(pids)
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    output = subprocess.run(["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{int(seconds)}s",
                             "--timeout", "10s", "-s", str(ROOT / "bench" / "load.lua"), hosts[0]],
                            env=env, capture_output=True, text=True, timeout=seconds * 4 + 30, check=True).stdout
    wall = time.perf_counter() - started
    usage_after, cpu_after, counted_after = (resource.getrusage(resource.RUSAGE_CHILDREN), cpu_by_role(pids),
                                             stack.counters())
    result = json.loads(output.strip().splitlines()[-1])
    operations = max(result["requests"], 1)
    generator_cpu = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
    cpu = {role: cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0) for role in pids}
    per_op = {name: (counted_after[name] - counted_before[name]) / operations for name in counted_after}
    return {
        "mode": mode, "clients": clients, "ops_per_s": result["requests"] / (result["duration_us"] / 1e6),
        "p50_ms": result["p50_us"] / 1000, "p95_ms": result["p95_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
        "errors": result["errors"], "data_calls_per_op": per_op.pop("data_calls"), "etcd_calls_per_op": per_op,
        "generator_cpu": generator_cpu / wall / os.cpu_count(),
        "servers_cpu": sum(cpu.values()) / wall / os.cpu_count(),
        "cpu_ms_per_op": sum(cpu.values()) * 1000 / operations,
        "cpu_ms_per_op_by_role": {role: seconds * 1000 / operations for role, seconds in cpu.items()},
    }


def measure_spread(stack, label, runs, accounts):
    """Seed stack with accounts spread- accounts, measure each (mode, clients) of runs on them and stop the stack;
    the rows, run_wrk's with "label"."""
    rows = []
    try:
        seed_accounts(stack, "spread-", accounts, "1000.00")
        for mode, clients in runs:
            result = run_wrk(stack, mode, clients, stack.entry(), stack.client_token, "spread-", accounts)
            print(f"{label:>11} {mode:>9} {clients:>3} clients: {result['ops_per_s']:8.0f} op/s  p50 "
                  f"{result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:7.1f} ms  CPU {result['cpu_ms_per_op']:.2f} "
                  f"ms/op  errors {result['errors']}", flush=True)
            rows.append({"label": label, **result})
    finally:
        stack.stop()
    return rows


@contextlib.contextmanager
def checked_out(revision, folder):
    """revision's tree at folder (a detached git worktree of this repository) while the block runs."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), revision], check=True,
                   capture_output=True)
    try:
        yield Path(folder)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], capture_output=True)


def seed_accounts(stack, prefix, count, amount):
    """Create accounts of the stack's client directly on the data server: setting up, not measuring. (A revision
    from before owners takes the owner's name and keeps none.)"""
    session_headers = {"Authorization": f"Bearer {stack.data_token}"}

    def create(index):
        with requests.Session() as session:
            account = f"{prefix}{index}"
            token = session.post(f"{stack.data.url}/getLock/b1/{account}", headers=session_headers,
                                 json={"wait_ms": 5000}, timeout=10).json()["token"]
            session.post(f"{stack.data.url}/commit/b1", headers=session_headers, timeout=10, json={
                "writes": [{"account": account, "amount": amount, "token": token, "owner": stack.client_name}],
                "unlock": True}).raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(create, range(count)))


def verdict(reached):
    """How a results table says whether a target was reached."""
    return "reached" if reached else "NOT reached"

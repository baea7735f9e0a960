"""The PostgreSQL peer beside the bank, in the same run (issue #20): the same wrk load on three gunicorn servers of
the business servers' shape running bench/peers/postgres_bank.py on a throwaway PostgreSQL cluster."""
from pathlib import Path

from bench.chart import CLIENTS
from bench.peers.postgres import Postgres
from bench.peers.postgres_bank import SCHEMA
from bench.stack import SECONDS, run_wrk, verdict
from harness.processes import Server, example_settings, free_port

MODES = (("deposit", "spread-"), ("hot", "hot-"), ("transfer", "tr-"), ("balance", "spread-"))


class PeerStack:
    """The peer's servers, as run_wrk measures a stack: where to send, which processes to count."""

    def __init__(self, workdir, database, count=3):
        settings = example_settings()
        env = {"PEER_DSN": database.dsn, "PEER_TOKEN": settings["CLIENT_TOKEN"],
               "PEER_POOL": settings["BUSINESS_THREADS"], "BUSINESS_WORKERS": settings["BUSINESS_WORKERS"],
               "BUSINESS_THREADS": settings["BUSINESS_THREADS"]}
        self.database, self.client_token = database, settings["CLIENT_TOKEN"]
        self.servers = [Server(f"peer{i}", "bench/peers/gunicorn.conf.py", free_port(), env, workdir).start(wait=False)
                        for i in range(1, count + 1)]
        for server in self.servers:
            server.wait_healthy()

    def entry(self):
        return [server.url for server in self.servers]

    def pids_by_role(self):
        return {"peer": [pid for server in self.servers for pid in server.pids()],
                "postgres": self.database.pids()}

    def counters(self):
        return {"data_calls": 0}

    def stop(self):
        for server in self.servers:
            server.stop()


def measure_peer(workdir, spread_accounts, transfer_accounts):
    accounts = {"spread-": spread_accounts, "hot-": 1, "tr-": transfer_accounts}
    database = Postgres(free_port()).start()
    rows = []
    try:
        database.sql(SCHEMA)
        database.sql("INSERT INTO accounts SELECT 'spread-' || i, 100000 "
                     f"FROM generate_series(0, {spread_accounts - 1}) i")
        database.sql("INSERT INTO accounts SELECT 'tr-' || i, 100000000 "
                     f"FROM generate_series(0, {transfer_accounts - 1}) i")
        stack = PeerStack(Path(workdir), database)
        try:
            # Every pool's connections opened before anything is measured: their backends' CPU is counted.
            run_wrk(stack, "balance", 128, stack.entry(), stack.client_token, "spread-", spread_accounts)
            for mode, prefix in MODES:
                for clients in CLIENTS:
                    result = run_wrk(stack, mode, clients, stack.entry(), stack.client_token, prefix, accounts[prefix])
                    print(f"peer: {mode:>9} {clients:>4} clients: {result['ops_per_s']:8.0f} op/s  p99 "
                          f"{result['p99_ms']:7.1f} ms  errors {result['errors']}  CPU {result['cpu_ms_per_op']:.2f} "
                          "ms/op", flush=True)
                    rows.append(result)
        finally:
            stack.stop()
    finally:
        database.stop()
    return rows


def peer_lines(peer, operations):
    """The bank's rows of the same run beside the peer's."""
    bank = {(r["mode"], r["clients"]): r for r in operations}
    lines = ["", "## Against the PostgreSQL peer", "",
             f"`bench/peers/postgres_bank.py` on a throwaway PostgreSQL cluster (durable commits), three gunicorn "
             f"servers of the business servers' shape, the same wrk load for {SECONDS} s, in this run; the bank's "
             "figures are its rows above (journal, fsync always). CPU counts every server process: gunicorn and "
             "PostgreSQL's for the peer, data and business servers' for the bank.", "",
             "| phase | clients | peer op/s | bank op/s | bank / peer | peer p99 ms | bank p99 ms | peer CPU ms/op "
             "| bank CPU ms/op | peer errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in peer:
        mine = bank[(r["mode"], r["clients"])]
        lines.append(f"| {r['mode']} | {r['clients']} | {r['ops_per_s']:.0f} | {mine['ops_per_s']:.0f} "
                     f"| {mine['ops_per_s'] / r['ops_per_s']:.2f} | {r['p99_ms']:.1f} | {mine['p99_ms']:.1f} "
                     f"| {r['cpu_ms_per_op']:.2f} | {mine['cpu_ms_per_op']:.2f} | {r['errors']} |")
    return lines


def peer_targets(peer, operations):
    """Issue #20's targets, each reached or not, on the run's rows."""
    bank = {(r["mode"], r["clients"]): r for r in operations}
    theirs = {(r["mode"], r["clients"]): r for r in peer}
    lines = []
    for mode, goal in (("deposit", 1.2), ("hot", 1.5), ("transfer", 1.5)):
        ratio = bank[(mode, 32)]["ops_per_s"] / theirs[(mode, 32)]["ops_per_s"]
        lines.append(f"against the PostgreSQL peer: {mode} at 32 clients {ratio:.2f}x (target {goal}): "
                     f"{verdict(ratio >= goal)}")
    mine, peer_cpu = bank[("deposit", 32)]["cpu_ms_per_op"], theirs[("deposit", 32)]["cpu_ms_per_op"]
    lines.append(f"against the PostgreSQL peer: CPU per deposit at 32 clients {mine:.2f} ms, the peer's "
                 f"{peer_cpu:.2f} (target: no more): {verdict(mine <= peer_cpu)}")
    return lines

"""The cluster shape's soak: deposits for BENCH_SOAK_SECONDS (at least ten minutes) on two data servers that relay
their history to the statement store (PostgreSQL under Patroni, two members), etcd held to a 256 MiB quota. It
looks at etcd's database every SAMPLE_EVERY seconds and finds whether its size in use, once each compaction is
through, stays flat, that nothing was refused for lack of room, and that PostgreSQL holds every entry; it reports
etcd's bytes per deposit at steady state and what relaying costs an entry (PostgreSQL's CPU).

python -m bench.soak_phase runs it alone (results printed, not written)."""
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

from bench.stack import TICKS, Stack, run_wrk, seed_accounts, verdict
from data.etcd.account_values import account_state
from data.etcd.gateway import EtcdGateway, decode, get, kvs
from data.etcd.keys import EtcdKeys
from data.statements.postgres import DATABASE, USER, StatementStore
from harness.etcd_cluster import EtcdCluster
from harness.processes import children_of, example_settings, proc_stat
from harness.statements_cluster import StatementsCluster
from ops.certs import make_all
from shared.settings import TlsFiles

SOAK_SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", "660"))    # two of etcd's five-minute compactions
QUOTA_BYTES = 256 * 2 ** 20
SAMPLE_EVERY = 10
ACCOUNTS = 2000
CLIENTS = 32
DB_BYTES_IN_USE = "etcd_mvcc_db_total_size_in_use_in_bytes"
COMPACTED_TO = "etcd_debugging_mvcc_compact_revision"     # the revision etcd last compacted to; 0 before any
FLAT_WITHIN = 1.25      # in use once the last compaction is through, at most this times once the first was
LOOKS_AFTER = 3


def measure_soak(workdir):
    """{"seconds", "ops_per_s", "errors", "samples": [(s, bytes in use, revision compacted to, backlog)], ...}."""
    workdir = Path(workdir)
    tls = workdir / "soak-tls"
    make_all(tls, ["127.0.0.1", "localhost"])
    etcd = EtcdCluster(workdir / "soak-etcd", quota_bytes=QUOTA_BYTES).start()
    statements = StatementsCluster(etcd.endpoints, tls)
    try:
        statements.start()
        stack = Stack(workdir / "soak-tier", etcd=etcd, data_count=2, data_env=statements.data_settings())
        try:
            seed_accounts(stack, "soak-", ACCOUNTS, "1000.00")
            result, samples, postgres_seconds = _deposits_sampled(stack, etcd, statements)
            drained = _wait_drained(stack)
        finally:
            stack.stop()
        entries = _entries(etcd, example_settings()["ETCD_PREFIX"])
        kept = _kept(statements, tls, example_settings()["ETCD_PREFIX"])
    finally:
        statements.stop()
        etcd.stop()
    soak = {"seconds": SOAK_SECONDS, "ops_per_s": result["ops_per_s"], "errors": result["errors"],
            "samples": samples, "quota_bytes": QUOTA_BYTES, "entries": entries, "kept": kept, "drained": drained,
            "postgres_cpu_ms_per_entry": 1000 * postgres_seconds / max(kept, 1)}
    print(f"soak: {result['ops_per_s']:.0f} op/s for {SOAK_SECONDS} s, {result['errors']} errors, in use "
          f"{[round(sample[1] / 1e6) for sample in samples]} MB, {kept} of {entries} entries in PostgreSQL",
          flush=True)
    return soak


def _deposits_sampled(stack, etcd, statements):
    samples, done, started = [], threading.Event(), time.monotonic()

    def sample():
        while not done.wait(SAMPLE_EVERY):
            members = [etcd.metrics(name) for name in etcd.names]
            backlog = requests.get(f"{stack.data.url}/health", timeout=5).json().get("history_backlog")
            samples.append((time.monotonic() - started, max(m.get(DB_BYTES_IN_USE, 0) for m in members),
                            max(m.get(COMPACTED_TO, 0) for m in members), backlog))

    sampler = threading.Thread(target=sample, daemon=True)
    postgres_before = _postgres_cpu_seconds(statements)
    sampler.start()
    try:
        result = run_wrk(stack, "deposit", CLIENTS, stack.entry(), stack.client_token, "soak-", ACCOUNTS,
                         SOAK_SECONDS)
    finally:
        done.set()
        sampler.join(SAMPLE_EVERY + 10)
    return result, samples, _postgres_cpu_seconds(statements) - postgres_before


def _postgres_cpu_seconds(statements):
    """CPU seconds PostgreSQL's processes (both members') have used, those running now."""
    total = 0.0
    for member in statements.members.values():
        try:
            postmaster = int((member.folder / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        for pid in [postmaster, *children_of(postmaster)]:
            fields = proc_stat(pid)
            if fields:
                total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def _wait_drained(stack, timeout=60):
    """Whether the relay emptied etcd of history within timeout seconds of the load's end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests.get(f"{stack.data.url}/health", timeout=5).json().get("history_backlog") == 0:
            return True
        time.sleep(0.5)
    return False


def _entries(etcd, prefix):
    """The entries the bank has recorded: each account's last seq, summed."""
    gateway = EtcdGateway(etcd.endpoints, 10)
    answer = gateway.txn(success=[get(EtcdKeys(prefix).amounts(), prefix=True)], resend=True)
    return sum(account_state(decode(kv["value"])).last_seq for kv in kvs(answer["responses"][0]))


def _kept(statements, tls, prefix):
    """The entries the statement store holds for the bank."""
    files = TlsFiles(str(tls / "ca.pem"), str(tls / "statements.pem"), str(tls / "statements-key.pem"))
    member = statements.members[statements.primary()]
    schema = StatementStore([], files, prefix, 1).schema
    with psycopg.connect(host=member.address, port=member.pg_port, dbname=DATABASE, user=USER, sslmode="verify-full",
                         sslrootcert=files.ca, sslcert=files.cert, sslkey=files.key) as db:
        return db.execute(f'SELECT count(*) FROM "{schema}".entries').fetchone()[0]


def after_compactions(samples):
    """(seconds, bytes in use) once each compaction of etcd is through: the least in use of the LOOKS_AFTER looks
    from the one that saw its revision (etcd frees the compacted revisions' pages over a few seconds)."""
    troughs, compacted = [], 0
    for index, sample in enumerate(samples):
        if sample[2] > compacted:
            compacted = sample[2]
            low = min(samples[index:index + LOOKS_AFTER], key=lambda look: look[1])
            troughs.append((low[0], low[1]))
    return troughs


def soak_lines(soak):
    samples, troughs = soak["samples"], after_compactions(soak["samples"])
    if len(troughs) < 2:
        return ["", f"Soak: {soak['seconds']} s saw {len(troughs)} compaction of etcd, two are needed "
                "(BENCH_SOAK_SECONDS)."]
    (first_at, first), (last_at, last) = troughs[0], troughs[-1]
    per_op = (last - first) / max((last_at - first_at) * soak["ops_per_s"], 1e-9)
    peak = max(sample[1] for sample in samples)
    return ["", f"Soak (the cluster shape's, with the statement store): deposits at {CLIENTS} clients on "
            f"{ACCOUNTS} accounts for {soak['seconds']} s ({soak['ops_per_s']:.0f} op/s, {soak['errors']} errors), "
            f"two data servers relaying to PostgreSQL under Patroni, etcd's quota {QUOTA_BYTES >> 20} MiB. etcd's "
            f"database in use, MB, every {SAMPLE_EVERY} s: " + ", ".join(f"{s[1] / 1e6:.0f}" for s in samples)
            + "; the backlog in etcd: " + ", ".join(str(s[3]) for s in samples) + ".",
            "Once each compaction was through, in use: " + ", ".join(
                f"{size / 1e6:.0f} MB ({at:.0f} s)" for at, size in troughs) + f": the last {last / first:.2f} "
            f"times the first (flat: at most {FLAT_WITHIN}, {verdict(last <= FLAT_WITHIN * first)}), "
            f"{per_op:.0f} bytes a deposit staying in etcd at steady state; at most {peak / 1e6:.0f} MB in use, "
            f"just before a compaction, of the {QUOTA_BYTES >> 20} MiB quota. No write refused (target 0 errors: "
            f"{verdict(soak['errors'] == 0)}). PostgreSQL holds {soak['kept']:,} of the {soak['entries']:,} "
            f"entries the bank recorded ({verdict(soak['kept'] == soak['entries'] and soak['drained'])}); "
            f"relaying cost PostgreSQL {soak['postgres_cpu_ms_per_entry']:.3f} ms of CPU an entry."]


def main():
    with tempfile.TemporaryDirectory(prefix="bank-soak-") as workdir:
        print("\n".join(soak_lines(measure_soak(workdir))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

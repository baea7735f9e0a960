"""What a hold costs (#31), in one run on `make run`'s shape: a transfer against a hold-then-capture that moves the
same money, rounds taken in turn (transfer, hold, transfer, hold, ...) so that the machine's drift falls on both.
The load is Python threads with keep-alive sessions, the same for both, so only the ratio means anything.

python -m bench.holds_phase runs it alone and prints its table."""
import statistics
import sys
import tempfile
import threading
import time

import requests

from bench.stack import SECONDS, Stack, seed_accounts, verdict
from client.check_report import percentile

CLIENTS = 16
ACCOUNTS = 10
ROUNDS = 3
MOST_COST = 2.5         # a hold-then-capture at most this many transfers' time: two lock cycles against one


def _transfer(session, base, headers, origin, target):
    return session.post(f"{base}/transfer/{origin}/{target}/1.00", headers=headers, timeout=10).status_code == 200


def _hold_then_capture(session, base, headers, origin, target):
    placed = session.post(f"{base}/holds/{origin}/{target}/1.00?expires_in=60", headers=headers, timeout=10)
    if placed.status_code != 201:
        return False
    captured = session.post(f"{base}/holds/{placed.json()['id']}/capture", headers=headers, timeout=10)
    return captured.status_code == 200


def _round(stack, kind, seconds):
    """CLIENTS threads doing kind for seconds: {"kind", "done", "errors", "per_s", "p50_ms", "p99_ms"}."""
    move = _transfer if kind == "transfer" else _hold_then_capture
    headers = {"Authorization": f"Bearer {stack.client_token}"}
    bases = [server.url for server in stack.businesses]
    latencies, errors, mutex = [], [0], threading.Lock()
    deadline = time.monotonic() + seconds

    def client(index):
        session, mine = requests.Session(), []
        origin, target = f"hold-{index % ACCOUNTS}", f"hold-{(index + 1) % ACCOUNTS}"
        while time.monotonic() < deadline:
            started = time.perf_counter()
            ok = move(session, bases[index % len(bases)], headers, origin, target)
            mine.append(time.perf_counter() - started)
            if not ok:
                with mutex:
                    errors[0] += 1
        with mutex:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    ordered = sorted(ms * 1000 for ms in latencies)
    return {"kind": kind, "done": len(ordered), "errors": errors[0], "per_s": len(ordered) / seconds,
            "p50_ms": percentile(ordered, 50), "p99_ms": percentile(ordered, 99)}


def measure_holds(workdir, seconds=SECONDS):
    """ROUNDS rounds of each kind, taken in turn on one stack."""
    stack = Stack(workdir)
    try:
        seed_accounts(stack, "hold-", ACCOUNTS, "1000000.00")
        rows = []
        for _ in range(ROUNDS):
            for kind in ("transfer", "hold-then-capture"):
                rows.append(_round(stack, kind, seconds))
                print(f"{kind:>18} {CLIENTS} clients: {rows[-1]['per_s']:7.0f}/s  p50 {rows[-1]['p50_ms']:6.1f} ms  "
                      f"errors {rows[-1]['errors']}", flush=True)
    finally:
        stack.stop()
    return {"rows": rows}


def _median(rows, kind, field):
    return statistics.median(row[field] for row in rows if row["kind"] == kind)


def holds_lines(result):
    rows = result["rows"]
    transfer, hold = (_median(rows, kind, "per_s") for kind in ("transfer", "hold-then-capture"))
    return ["", f"A hold then its capture against a transfer of the same money, same run, `make run`'s shape, "
                f"{CLIENTS} Python clients; the median of {ROUNDS} rounds each, taken in turn.", "",
            "| moves | per s | p50 ms | p99 ms | errors |", "| --- | ---: | ---: | ---: | ---: |",
            *(f"| {kind} | {_median(rows, kind, 'per_s'):.0f} | {_median(rows, kind, 'p50_ms'):.1f} "
              f"| {_median(rows, kind, 'p99_ms'):.1f} | {sum(r['errors'] for r in rows if r['kind'] == kind)} |"
              for kind in ("transfer", "hold-then-capture")),
            "", f"A hold-then-capture takes {transfer / hold:.2f} transfers' time (two requests, two lock cycles)."]


def holds_targets(result):
    rows = result["rows"]
    cost = _median(rows, "transfer", "per_s") / _median(rows, "hold-then-capture", "per_s")
    errors = sum(row["errors"] for row in rows)
    return [f"a hold-then-capture costs {cost:.2f} transfers (target: at most {MOST_COST}), {errors} errors: "
            f"{verdict(cost <= MOST_COST and errors == 0)}"]


def main():
    with tempfile.TemporaryDirectory(prefix="bank-bench-holds-") as workdir:
        result = measure_holds(workdir)
    print("\n".join(holds_lines(result) + [""] + holds_targets(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

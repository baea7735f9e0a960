"""make lab: the bank on eleven simulated hosts under a nemesis of partitions, kills and pauses, checked as it runs.

python -m lab [--schedule full|short] [--results DIR]. Linux, as root, with ip (iproute2), nft (nftables), etcd,
PostgreSQL and Patroni (make statements-packages).
Builds the network, runs lab/experiment.py inside the client's host, always takes the network and every process
in it down again, and writes DIR/latest.md, latest.json and timeline.png. Exit 0 when the checker found no
violation, 1 when it did, 2 when the lab could not run (the reason on one line).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.processes import ROOT
from lab import report
from lab.experiment import BETWEEN_SECONDS, FAULT_SECONDS, HOSTS, TAIL_SECONDS, WARM_UP_SECONDS
from lab.faults import SCHEDULES
from lab.network import LabError, Network, sweep
from ops import patroni

RESULTS = ROOT / "lab" / "results"


def missing_means():
    """Why the lab cannot run here, or None."""
    if sys.platform != "linux":
        return "the lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the lab needs root to make network namespaces"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("etcd", "etcd-server")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    if not os.access(f"{patroni.PATRONI_VENV}/bin/patroni", os.X_OK):
        return f"Patroni is not installed in {patroni.PATRONI_VENV} (make statements-packages)"
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n")[0])
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="full")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where latest.md, .json and .png go")
    parser.add_argument("--no-chart", action="store_true", help="the table and the JSON only (no matplotlib)")
    args = parser.parse_args(argv)
    # A SIGTERM unwinds like Ctrl-C, through the clean-up below.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    reason = missing_means()
    if reason:
        print(f"lab: cannot run: {reason}", file=sys.stderr)
        return 2
    for namespace in sweep():
        print(f"lab: removed {namespace}, left by a run that did not clean up", flush=True)
    network = Network(HOSTS)
    seconds = WARM_UP_SECONDS + len(SCHEDULES[args.schedule]) * (FAULT_SECONDS + BETWEEN_SECONDS) + TAIL_SECONDS
    with tempfile.TemporaryDirectory(prefix="bank-lab-") as folder:
        try:
            network.create()
            print(f"lab: {len(HOSTS)} hosts on {network.prefix}*, sealed off; schedule {args.schedule}, "
                  f"about {seconds} s of faults", flush=True)
            subprocess.run([*network.wrapper("client"), sys.executable, "-m", "lab.experiment",
                            json.dumps(network.describe()), args.schedule, folder],
                           cwd=ROOT, check=True, timeout=seconds + 600)
            run = json.loads((Path(folder) / "run.json").read_text())
        except (LabError, subprocess.SubprocessError, OSError) as error:
            print(f"lab: the run failed: {error}", file=sys.stderr)
            return 2
        finally:
            network.destroy()
    rows, series = report.figures(run), report.timeline(run)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.json").write_text(json.dumps({"rows": rows, "violations": run["violations"],
                                                          "unknown": run["unknown"], "operations": run["operations"],
                                                          "sent": run["sent"],
                                                          "timeline": series}, indent=1))
    (args.results / "latest.md").write_text(report.markdown(run, rows))
    if not args.no_chart:
        report.chart(series, args.schedule, args.results / "timeline.png")
    print((args.results / "latest.md").read_text())
    return 1 if run["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())

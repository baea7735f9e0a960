"""The partition lab's short schedule (lab/faults.py) on simulated hosts: the etcd leader isolated, a data server
cut off from etcd, a business server paused and partitioned past its lease. The bank stays exact, the side with a
quorum keeps serving, a stale holder's late write is refused, and the lab leaves no namespace behind."""
import json
import subprocess
import sys

import pytest

from harness.processes import ROOT
from lab.__main__ import missing_means
from lab.network import lab_namespaces


def test_the_short_partition_schedule_leaves_the_bank_exact_and_serving(tmp_path):
    reason = missing_means()
    if reason:
        pytest.skip(f"the lab cannot run here: {reason}")
    done = subprocess.run([sys.executable, "-m", "lab", "--schedule", "short", "--results", str(tmp_path),
                           "--no-chart"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    print(done.stdout[-4000:], done.stderr[-2000:])
    assert done.returncode == 0
    results = json.loads((tmp_path / "latest.json").read_text())
    # Acknowledged operations only: refusals and unknown outcomes are not served.
    assert results["violations"] == [] and results["unknown"] == 0 and results["operations"] > 1000
    rows = {row["name"]: row for row in results["rows"]}
    assert set(rows) == {"leader isolated", "data server cut off from etcd", "business server paused and partitioned"}
    for name in ("leader isolated", "data server cut off from etcd"):
        # Half the rate before the fault from 5 s into it, full rate within 5 s of healing.
        assert rows[name]["serving"] and rows[name]["recovered"], rows[name]
    for name, row in rows.items():
        # The bank served before every fault: one that stopped at an earlier fault fails the next here.
        assert row["rate_before"] > 0, name
    # After the last fault every account is written steadily until the end of the run.
    last = results["rows"][-1]
    assert last["steady"] is True, (last["name"], last["unsteady"])
    # The stale holder, partitioned with business2 past its lease, wrote late: refused, and the checker saw nothing.
    stale = rows["business server paused and partitioned"]
    assert [late["status"] for late in stale["late_writes"]] == [409] and stale["fencing_refusals"] >= 1
    assert lab_namespaces() == []

"""The system as users run it: the Procfile under honcho, the tour, and concurrent checks on real processes."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from client.check import BankCheck
from client.tour import Tour
from harness.processes import ROOT, free_port
from tests.helpers import CHECK_CLIENTS, CLIENT_TOKEN


def fresh_checkout(tmp_path, procfile):
    checkout = tmp_path / "checkout"
    for folder in ("data", "business", "client", "shared", "ops"):
        shutil.copytree(ROOT / folder, checkout / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / procfile, checkout)
    return checkout


def honcho_start(checkout, home, *args, env=None):
    """Run `honcho start` there as a user would, the venv on PATH (and env); return its exit status and output."""
    bin_dir = str(Path(sys.executable).parent)
    environment = {name: value for name, value in os.environ.items() if name != "XDG_RUNTIME_DIR"}
    honcho = subprocess.Popen([os.path.join(bin_dir, "honcho"), *args, "start"], cwd=checkout,
                              env={**environment, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(home),
                                   **(env or {})},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = honcho.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(honcho.pid, signal.SIGKILL)
        output, _ = honcho.communicate(timeout=10)
        output += "\n(honcho did not end within 180 s: killed)"
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait(10)
    print(output[-6000:])
    return honcho.returncode, output


def test_cp_env_example_and_honcho_start_in_a_fresh_checkout_runs_the_demo_and_exits_with_its_status(tmp_path):
    checkout = fresh_checkout(tmp_path, "Procfile")
    # Free ports instead of the example's fixed ones, so that the test runs beside anything; nothing else changes.
    ports = {name: free_port() for name in ("DATA_PORT", "BUSINESS1_PORT", "BUSINESS2_PORT", "BUSINESS3_PORT")}
    settings = (ROOT / ".env.example").read_text() + "".join(f"{name}={port}\n" for name, port in ports.items())
    settings += f"DATA_URLS=http://127.0.0.1:{ports['DATA_PORT']}\n"
    settings += "BUSINESS_URLS=" + ",".join(f"http://127.0.0.1:{ports[f'BUSINESS{i}_PORT']}" for i in (1, 2, 3))
    (checkout / ".env").write_text(settings + "\n")
    # An empty home, to see that nothing is written outside the project (gunicorn's control socket was).
    home = tmp_path / "home"
    home.mkdir()
    returncode, output = honcho_start(checkout, home)
    assert returncode == 0
    assert "FAIL" not in output and output.count("PASS") >= 15
    assert re.search(r"client\.1\s+\| demo passed: \d+ features, \d+ operations checked, no violation", output)
    assert (checkout / "var" / "data.journal").stat().st_size > 0
    assert (checkout / "var" / "demo-verdict.txt").read_text().startswith("demo passed: ")
    assert list(home.iterdir()) == []
    # Every server stops cleanly on honcho's SIGTERM, and says at INFO what it served, not each request.
    for process, server in (("data.1", "data"), ("business1.1", "business-b1"), ("business2.1", "business-b2"),
                            ("business3.1", "business-b3")):
        assert f"{process} stopped (rc=0)" in output, process
        summary = rf"{re.escape(process)}\s+\| server={server} pid=\d+ last \d+ s: \d+ requests"
        assert re.search(summary, output), process
        assert not re.search(rf"{re.escape(process)}\s+\| server={server} rid=", output), process


def test_the_tour_passes_against_three_business_servers(start_system):
    system = start_system()
    assert Tour(system.apis(), CHECK_CLIENTS, sys.stdout).run()


def test_dozens_of_workers_on_a_few_hot_accounts_across_all_servers_find_no_violation(start_system):
    system = start_system()
    report = BankCheck(system.apis(), CHECK_CLIENTS, workers=32, accounts=3, operations=1500, seed=7).run()
    assert report.violations == []
    assert sum(1 for event in report.events if event.outcome == "ok") > 500


def test_crossing_transfers_between_two_accounts_never_deadlock_or_lose_money(start_system):
    system = start_system()
    report = BankCheck(system.apis(), CHECK_CLIENTS, workers=24, accounts=2, operations=800, seed=11).run()
    assert report.violations == []
    directions = {event.accounts for event in report.events if event.kind == "transfer" and event.outcome == "ok"}
    assert len(directions) == 2, "transfers went both ways between the two accounts"


def test_the_cluster_procfile_runs_the_demo_on_three_etcd_members_two_postgresql_and_two_data_servers(tmp_path):
    checkout = fresh_checkout(tmp_path, "Procfile.cluster")
    # Every fixed port of the Procfile becomes a free one, so that the test runs beside anything.
    procfile = (checkout / "Procfile.cluster").read_text()
    for port in sorted(set(re.findall(r"(?<=[:=])(\d{4,5})\b", procfile))):
        procfile = re.sub(rf"(?<=[:=]){port}\b", str(free_port()), procfile)
    (checkout / "Procfile.cluster").write_text(procfile)
    shutil.copy(ROOT / ".env.example", checkout / ".env")
    (checkout / "var" / "etcd").mkdir(parents=True, mode=0o700)
    # TLS on every hop, with the certificates make certs writes.
    subprocess.run([sys.executable, "-m", "ops.certs"], cwd=checkout, check=True, capture_output=True, timeout=60)
    home = tmp_path / "home"
    home.mkdir()
    # The PostgreSQL members' folders where their own user reaches them, whoever runs the tests.
    pg_dir = Path(tempfile.mkdtemp(prefix="bank-cluster-pg-"))
    os.chmod(pg_dir, 0o711)
    try:
        returncode, output = honcho_start(checkout, home, "-f", "Procfile.cluster", env={"PG_DIR": str(pg_dir)})
    finally:
        shutil.rmtree(pg_dir, ignore_errors=True)
    assert returncode == 0, [line for line in output.splitlines() if "client.1" in line or "relay:" in line][-12:]
    assert re.search(r"client\.1\s+\| demo passed: \d+ features, \d+ operations checked, no violation", output)
    assert re.search(r"client\.1\s+\| statements: every entry is in the statement store \(relayed by ", output), \
        [line for line in output.splitlines() if "client.1" in line][-5:]
    assert (checkout / "var" / "etcd" / "m1" / "member").is_dir()


def test_the_client_prints_a_statement_page_by_page(start_system):
    system = start_system()
    api = system.apis()[0]
    for amount in ("10.00", "2.50", "0.25"):
        assert api.deposit("statement-alice", amount, key=f"st-{amount}").status == 200
    urls = ",".join(business.url for business in system.businesses)

    def client_history(*args):
        return subprocess.run([sys.executable, "-m", "client", "--urls", urls, "--token", CLIENT_TOKEN, "history",
                               *args], cwd=ROOT, capture_output=True, text=True, timeout=60)

    first = client_history("statement-alice", "--limit", "2")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == "statement of statement-alice, newest first"
    assert re.match(r"\s+3\s+\S+Z\s+deposit\s+0\.25\s+12\.75\s+st-0\.25$", lines[2])
    assert re.match(r"\s+2\s+\S+Z\s+deposit\s+2\.50\s+12\.50\s+st-2\.50$", lines[3])
    cursor = re.search(r"--cursor (\S+)$", lines[-1]).group(1)
    older = client_history("statement-alice", "--limit", "2", "--cursor", cursor).stdout.splitlines()
    assert re.match(r"\s+1\s+\S+Z\s+deposit\s+10\.00\s+10\.00\s+st-10\.00$", older[2]) and len(older) == 3
    bad_cursor = client_history("statement-alice", "--cursor", "bogus")
    assert bad_cursor.returncode == 1 and "400 invalid_cursor" in bad_cursor.stderr
    missing = client_history("nobody-here")
    assert missing.returncode == 1 and "404 account_not_found" in missing.stderr

"""Deliberately broken banks, to prove that the fault, soak and partition tests catch a bank that stops serving.

Each is the real business app behind a WSGI wrapper that refuses every write with 503 account_busy (nothing
applied, as an honest busy bank says) from some moment on:

  refuse-always                from the start
  refuse-after-unavailable     once any business server of the bank has answered one 503 data_unavailable
  refuse-3s-after-unavailable  3 s after that: the bank recovers from the fault for a while, then stops

Run the tests against one: `python -m harness.broken_banks KIND [pytest arguments]` (by default the fault, soak
and partition tests). It prints, for each test, whether the broken bank was reached (it refused a write: for the
kinds that wait for a data_unavailable, only a fault that makes one reaches them) and whether the test failed, and
exits 1 if any test passed that the broken bank reached. The tests' business servers (tests/e2e/conftest.py,
lab/experiment.py) run the broken app when BROKEN_BANK names a kind; BROKEN_BANK_STATE is the file, shared by the
bank's business servers, that holds when the first data_unavailable was answered; each broken server that starts
refusing adds the test it serves (PYTEST_CURRENT_TEST, inherited from pytest) to the file BROKEN_BANK_REPORT names.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

KIND_ENV, STATE_ENV, REPORT_ENV = "BROKEN_BANK", "BROKEN_BANK_STATE", "BROKEN_BANK_REPORT"
# Seconds from the first data_unavailable to refusing every write; None: refuse from the start.
REFUSE_AFTER_SECONDS = {"refuse-always": None, "refuse-after-unavailable": 0.0, "refuse-3s-after-unavailable": 3.0}
BROKEN_APP = "harness.broken_banks:create_app()"
FAULT_TESTS = ("tests/e2e/test_faults.py", "tests/e2e/test_batcher.py", "tests/e2e/test_etcd_bank.py",
               "tests/e2e/test_soak.py", "tests/e2e/test_partitions.py", "tests/e2e/test_statement_faults.py")
REFUSAL = json.dumps({"error": "account_busy", "message": "broken bank: every write is refused, nothing applied"})


class BusinessLaunch:
    """What a business server runs: its app (None: the real one, as its gunicorn config names it) and settings."""

    def __init__(self, env, folder):
        kind = os.environ.get(KIND_ENV, "")
        if kind and kind not in REFUSE_AFTER_SECONDS:
            raise SystemExit(f"{KIND_ENV}: must be one of {', '.join(REFUSE_AFTER_SECONDS)}, got {kind!r}")
        self.app = BROKEN_APP if kind else None
        self.env = {**env, STATE_ENV: str(Path(folder) / "broken-bank.state")} if kind else env


class RefusingWrites:
    """WSGI middleware: the wrapped app until the kind's moment, then 503 account_busy to every write."""

    def __init__(self, app, refuse_after_seconds, state_path, wall_clock=time.time):
        self._app, self._refuse_after_seconds = app, refuse_after_seconds
        self._state_path, self._wall_clock = Path(state_path), wall_clock
        self._first_unavailable_at = None
        self._reported = False

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST" and self._refusing():
            self._report_reached()
            body = REFUSAL.encode()
            start_response("503 Service Unavailable", [("Content-Type", "application/json"),
                                                       ("Content-Length", str(len(body)))])
            return [body]
        answered = {}

        def remember(status, headers, exc_info=None):
            answered["status"] = status
            return start_response(status, headers, exc_info)

        body = b"".join(self._app(environ, remember))
        if answered["status"].startswith("503") and b'"data_unavailable"' in body:
            self._note_unavailable()
        return [body]

    def _refusing(self):
        if self._refuse_after_seconds is None:
            return True
        first = self._first_unavailable()
        return first is not None and self._wall_clock() >= first + self._refuse_after_seconds

    def _first_unavailable(self):
        if self._first_unavailable_at is None:
            try:
                self._first_unavailable_at = float(self._state_path.read_text())
            except (OSError, ValueError):
                return None
        return self._first_unavailable_at

    def _report_reached(self):
        report = os.environ.get(REPORT_ENV)
        if report and not self._reported:
            self._reported = True
            with open(report, "a") as reached:
                reached.write(os.environ.get("PYTEST_CURRENT_TEST", "(no test)").rsplit(" (", 1)[0] + "\n")

    def _note_unavailable(self):
        try:
            descriptor = os.open(self._state_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        with os.fdopen(descriptor, "w") as state:
            state.write(repr(self._wall_clock()))


def create_app():
    """The business app as BROKEN_BANK breaks it (gunicorn loads this in place of the real one)."""
    from business.business_server import create_app as create_business_app
    return RefusingWrites(create_business_app(), REFUSE_AFTER_SECONDS[os.environ[KIND_ENV]], os.environ[STATE_ENV])


def test_outcomes(junit_xml):
    """{test id: "passed" | "failed" | "skipped"} from pytest's JUnit XML."""
    outcomes = {}
    for case in ElementTree.parse(junit_xml).iter("testcase"):
        path = case.get("classname").replace(".", "/") + ".py"
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        outcomes[f"{path}::{case.get('name')}"] = "failed" if failed else "skipped" if skipped else "passed"
    return outcomes


def main(argv):
    if not argv or argv[0] not in REFUSE_AFTER_SECONDS:
        print(f"usage: python -m harness.broken_banks {{{'|'.join(REFUSE_AFTER_SECONDS)}}} [pytest arguments]\n"
              "Runs the tests (the fault, soak and partition tests by default) against that broken bank: every "
              "test it reaches must fail.", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="broken-bank-") as folder:
        reached_path, junit_xml = Path(folder) / "reached", Path(folder) / "junit.xml"
        reached_path.touch()
        environment = {**os.environ, KIND_ENV: argv[0], REPORT_ENV: str(reached_path)}
        subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={junit_xml}",
                        *(argv[1:] or FAULT_TESTS)], env=environment, check=False)
        reached = set(reached_path.read_text().split())
        outcomes = test_outcomes(junit_xml)
    print(f"\nbroken bank {argv[0]}:")
    escaped = []
    for test, outcome in sorted(outcomes.items()):
        verdict = "caught" if outcome == "failed" else outcome
        if test in reached and outcome == "passed":
            verdict, escaped = "ESCAPED: reached, and the test passed", [*escaped, test]
        print(f"  {'reached' if test in reached else 'not reached':<12} {verdict:<10} {test}")
    print(f"{len(escaped)} tests passed against a bank that stopped serving" if escaped
          else "every test the broken bank reached failed")
    return 1 if escaped else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

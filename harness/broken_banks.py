"""Deliberately broken banks, to prove that the fault, soak and partition tests catch a bank that stops serving.

Each is the real business app behind a WSGI wrapper that refuses every write with 503 account_busy (nothing
applied, as an honest busy bank says) from some moment on:

  refuse-always                from the start
  refuse-after-unavailable     once any business server of the bank has answered one 503 data_unavailable
  refuse-3s-after-unavailable  3 s after that: the bank recovers from the fault for a while, then stops

Run the tests against one: `python -m harness.broken_banks KIND [pytest arguments]` (by default the fault, soak
and partition tests); every test its fault reaches must FAIL. The tests' business servers (tests/e2e/conftest.py,
lab/experiment.py) run the broken app when BROKEN_BANK names a kind; BROKEN_BANK_STATE is the file, shared by the
bank's business servers, that holds when the first data_unavailable was answered.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

KIND_ENV, STATE_ENV = "BROKEN_BANK", "BROKEN_BANK_STATE"
# Seconds from the first data_unavailable to refusing every write; None: refuse from the start.
REFUSE_AFTER_SECONDS = {"refuse-always": None, "refuse-after-unavailable": 0.0, "refuse-3s-after-unavailable": 3.0}
BROKEN_APP = "harness.broken_banks:create_app()"
FAULT_TESTS = ("tests/e2e/test_faults.py", "tests/e2e/test_batcher.py", "tests/e2e/test_etcd_bank.py",
               "tests/e2e/test_soak.py", "tests/e2e/test_partitions.py")
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

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] == "POST" and self._refusing():
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


def main(argv):
    if not argv or argv[0] not in REFUSE_AFTER_SECONDS:
        print(f"usage: python -m harness.broken_banks {{{'|'.join(REFUSE_AFTER_SECONDS)}}} [pytest arguments]\n"
              "Runs the tests (the fault, soak and partition tests by default) against that broken bank: every "
              "test whose fault reaches it must fail.", file=sys.stderr)
        return 2
    arguments = argv[1:] or ["-p", "no:cacheprovider", "-rA", *FAULT_TESTS]
    return subprocess.run([sys.executable, "-m", "pytest", *arguments], env={**os.environ, KIND_ENV: argv[0]},
                          check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

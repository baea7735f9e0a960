"""The suite's own rules hold: a test whose thread raises fails, and so does one that leaves a thread running.

Each is shown on a tiny test file run by pytest in a process of its own, with the repository's pytest.ini.
"""
import os
import subprocess
import sys
import textwrap

from harness.processes import ROOT

A_THREAD_THAT = '''
    import threading

    def test_a_thread_that_{name}():
        thread = threading.Thread(target={target}, daemon=True)
        thread.start()
        thread.join({join})
'''


def run_pytest(tmp_path, name, target, join=5, *options):
    """pytest's exit status and output on a test whose thread runs target."""
    test_file = tmp_path / f"test_{name.replace(' ', '_')}.py"
    test_file.write_text(textwrap.dedent(A_THREAD_THAT.format(name=name.replace(" ", "_"), target=target, join=join)))
    # Only the plugin pytest.ini names is loaded: the others' imports cost seconds a run.
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    environ.update(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", TESTS_THREAD_GRACE_SECONDS="0.5")
    finished = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pytest_timeout",
                               "-c", str(ROOT / "pytest.ini"), "--rootdir", str(tmp_path), *options, str(test_file)],
                              cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)
    return finished.returncode, finished.stdout + finished.stderr


def test_an_assertion_that_fails_in_a_thread_a_test_started_fails_that_test(tmp_path):
    status, output = run_pytest(tmp_path, "asserts", "lambda: exec('assert 1 == 2')")
    assert status == 1 and "1 failed" in output and "PytestUnhandledThreadExceptionWarning" in output, output
    # The same test with a thread that does not fail passes: it is the thread's exception that failed it.
    status, output = run_pytest(tmp_path, "asserts nothing", "lambda: None")
    assert status == 0 and "1 passed" in output, output


def test_a_thread_left_running_after_its_test_fails_that_test(tmp_path):
    # tests/conftest.py's check, loaded as a plugin: the tiny file lies outside tests/.
    status, output = run_pytest(tmp_path, "lives on", "threading.Event().wait", 0, "-p", "tests.conftest")
    assert status == 1 and "threads the test started still run after it" in output, output
    status, output = run_pytest(tmp_path, "ends", "lambda: None", 5, "-p", "tests.conftest")
    assert status == 0 and "1 passed" in output, output

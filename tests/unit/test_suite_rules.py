"""The suite's own rules hold: a test whose thread raises fails, and so does one that leaves a thread running.

Each is shown on a tiny test file run by pytest in a process of its own with the repository's pytest.ini: one test
breaks the rule, its twin does not.
"""
import os
import subprocess
import sys
import textwrap

from harness.processes import ROOT

TWIN_TESTS = '''
    import threading


    def run(target, join):
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(join)


    def test_breaks_the_rule():
        run({breaking}, {join})


    def test_keeps_the_rule():
        run(lambda: None, 5)
'''


def run_twins(tmp_path, breaking, join=5, *options):
    """What pytest's -rA report says of each twin test ({name: {"PASSED", "FAILED", "ERROR"}}: a test whose
    teardown errs is PASSED and ERROR), the first's thread running breaking; and the whole output."""
    test_file = tmp_path / "test_twins.py"
    test_file.write_text(textwrap.dedent(TWIN_TESTS.format(breaking=breaking, join=join)))
    # Only the plugin pytest.ini needs is loaded: the others' imports cost seconds a run.
    environ = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    environ.update(PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", TESTS_THREAD_GRACE_SECONDS="0.5", PYTHONPATH=str(ROOT))
    finished = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-p",
                               "pytest_timeout", "-c", str(ROOT / "pytest.ini"), "--rootdir", str(tmp_path), *options,
                               test_file.name], cwd=tmp_path, env=environ, capture_output=True, text=True,
                              timeout=120)
    output = finished.stdout + finished.stderr
    verdicts = {}
    for line in output.splitlines():
        verdict, _, rest = line.partition(" test_twins.py::")
        if verdict in ("PASSED", "FAILED", "ERROR"):
            verdicts.setdefault(rest.split(" ")[0], set()).add(verdict)
    return verdicts, output


def test_an_assertion_that_fails_in_a_thread_a_test_started_fails_that_test(tmp_path):
    verdicts, output = run_twins(tmp_path, "lambda: exec('assert 1 == 2')")
    assert verdicts == {"test_breaks_the_rule": {"FAILED"}, "test_keeps_the_rule": {"PASSED"}}, output
    assert "PytestUnhandledThreadExceptionWarning" in output and "assert 1 == 2" in output


def test_a_thread_left_running_after_its_test_fails_that_test(tmp_path):
    # tests/conftest.py's check, loaded as a plugin: the tiny file lies outside tests/.
    verdicts, output = run_twins(tmp_path, "threading.Event().wait", 0, "-p", "tests.conftest")
    assert verdicts == {"test_breaks_the_rule": {"PASSED", "ERROR"}, "test_keeps_the_rule": {"PASSED"}}, output
    assert "threads the test started still run after it" in output

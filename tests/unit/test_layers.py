"""Dependencies point one way: the application layer loads neither Flask, nor requests, nor the infrastructure."""
import subprocess
import sys

from bench.processes import ROOT


def test_the_application_layer_loads_neither_flask_nor_requests_nor_infra():
    probe = ("import sys, business.application.bank_service, business.application.queue_service; "
             "print(sorted(m for m in ('flask', 'requests', 'werkzeug', 'business.infra') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_the_benchmark_loads_nothing_from_the_tests():
    probe = "import sys, bench.run; print(sorted(m for m in sys.modules if m == 'tests' or m.startswith('tests.')))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"

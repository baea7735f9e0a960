"""Dependencies point one way: no import circles; the application layer loads neither Flask, nor requests, nor the
infrastructure; the stores load neither Flask nor the HTTP layer; the benchmark loads nothing from the tests."""
import ast
import subprocess
import sys

from harness.processes import ROOT

PACKAGES = ("data", "business", "client", "shared", "harness")


def loaded_by(module, candidates):
    """Which of candidates importing module loads, in a fresh interpreter."""
    probe = f"import sys, {module}; print(sorted(m for m in {candidates!r} if m in sys.modules))"
    return subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def project_imports(path, module):
    """The project modules that path imports anywhere in it, functions included."""
    package = module.rpartition(".")[0] if path.name != "__init__.py" else module
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:      # from . import x, from ..y import z: relative to the module's package
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name.split(".")[0] in PACKAGES)
    return found


def import_graph():
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {module: {name for name in project_imports(path, module) if name in modules and name != module}
            for module, path in modules.items()}


def circles(graph):
    """Every import circle, each as the path that closes it."""
    found, state = [], {}

    def visit(module, path):
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                found.append(path[path.index(imported):] + [imported])
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_no_module_of_the_project_takes_part_in_an_import_circle():
    graph = import_graph()
    assert "data.store" in graph["data.embedded.store"], "the graph misses imports"
    assert circles(graph) == []


def test_a_circle_is_found_where_there_is_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_stores_load_neither_flask_nor_the_http_layer():
    for store in ("data.store", "data.embedded.store", "data.etcd.store"):
        assert loaded_by(store, ("flask", "werkzeug", "data.data_server", "data.parsing")) == "[]", store


def test_the_application_layer_loads_neither_flask_nor_requests_nor_infra():
    loaded = loaded_by("business.application.bank_service, business.application.queue_service",
                       ("flask", "requests", "werkzeug", "business.infra", "business.bootstrap"))
    assert loaded == "[]"


def test_the_benchmark_loads_nothing_from_the_tests():
    probe = "import sys, bench.run; print(sorted(m for m in sys.modules if m == 'tests' or m.startswith('tests.')))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


def test_the_http_layer_imports_no_store_but_through_the_one_factory():
    imported = import_graph()["data.data_server"]
    assert "data.factory" in imported
    assert [name for name in imported if name.startswith(("data.embedded", "data.etcd"))] == []


def test_each_store_keeps_its_modules_in_its_own_folder_and_imports_not_the_other():
    graph = import_graph()
    for store, other in (("data.embedded", "data.etcd"), ("data.etcd", "data.embedded")):
        modules = [module for module in graph if module.startswith(store + ".")]
        assert modules, store
        assert [(module, name) for module in modules for name in graph[module] if name.startswith(other)] == []


def test_the_business_web_layer_does_not_import_the_gunicorn_supervisor():
    assert "business.batcher_supervisor" not in import_graph()["business.business_server"]

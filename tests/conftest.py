import gc
import os
import threading
import uuid

import pytest
from werkzeug.serving import make_server

from business.business_server import create_app as create_business_app
from data.data_server import create_app as create_data_app
from harness.etcd_cluster import EtcdCluster
from harness.statements_cluster import StatementsCluster
from ops.certs import make_all
from shared.settings import load_business_settings, load_data_settings
from tests.helpers import CLIENT_TOKEN, DATA_TOKENS, FakeClock, bearer, business_environ, store_environ, wait_until

# The fixtures that start etcd, or reach the run's cluster: a test that uses one is marked needs_etcd.
ETCD_FIXTURES = {"etcd_cluster", "make_etcd_cluster", "statements_cluster"}
# Threads that live as long as the process by design: one request-summary thread per app logging at INFO
# (shared/request_log.py) has no way to be stopped.
LIFELONG_THREADS = {"request-summary"}
# Seconds a test's threads have to end once it is over (tests/unit/test_suite_rules.py shortens it).
THREAD_GRACE_SECONDS = float(os.environ.get("TESTS_THREAD_GRACE_SECONDS", "5"))


def pytest_collection_modifyitems(config, items):
    """Marks every test under tests/e2e e2e, and every test that reaches etcd needs_etcd (by its fixtures, or
    the store fixture's etcd parameter), so that `-m "not needs_etcd and not e2e"` runs exactly those that need
    neither. store_environ checks the mark at run time too."""
    e2e = config.rootpath / "tests" / "e2e"
    for item in items:
        if e2e in item.path.parents:
            item.add_marker(pytest.mark.e2e)
        callspec = getattr(item, "callspec", None)
        if ETCD_FIXTURES & set(item.fixturenames) or (callspec and callspec.params.get("store") == "etcd"):
            item.add_marker(pytest.mark.needs_etcd)


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(autouse=True)
def no_thread_left_behind(request):
    """Whatever a unit or integration test starts, its fixtures (or it) stop: every thread it started has ended
    soon after it, but those that live as long as the process by design."""
    if request.node.get_closest_marker("e2e"):
        yield
        return
    before = set(threading.enumerate())
    yield
    if request.node.stash.get(FAILED, False):
        return          # the failure says what went wrong; threads it left are no news

    def left():
        return [thread.name for thread in threading.enumerate()
                if thread not in before and thread.name not in LIFELONG_THREADS]
    if left():
        gc.collect()    # a connection that only a reference cycle keeps open keeps its server's thread too
        wait_until(lambda: not left(), THREAD_GRACE_SECONDS,
                   lambda: f"threads the test started still run after it: {left()}")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory):
    """A 3-member etcd cluster on loopback for the whole run; each test keeps to a key prefix of its own."""
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory):
    """make certs' files for the run: a CA and every role's certificate, for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    make_all(folder, ["127.0.0.1", "localhost"])
    return folder


@pytest.fixture(scope="session")
def run_statements_cluster(etcd_cluster, tls_dir):
    cluster = StatementsCluster(etcd_cluster.endpoints, tls_dir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def statements_cluster(run_statements_cluster):
    """The statement store for the whole run: PostgreSQL under Patroni, two members replicating synchronously,
    on the run's etcd; each bank (etcd prefix) keeps its entries in a schema of its own. Whole (a primary and its
    synchronous standby) at the start of each test: fault tests kill its members."""
    run_statements_cluster.wait_ready(60)
    return run_statements_cluster


@pytest.fixture
def make_etcd_cluster(tmp_path):
    """Starts etcd clusters of the test's own (EtcdCluster's arguments after the folder); stops them after."""
    started = []

    def make(placements=None, **options):
        cluster = EtcdCluster(tmp_path / f"etcd-{len(started)}", placements, **options)
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.stop()


@pytest.fixture
def etcd_prefix():
    """The test's own keys in the shared cluster: every data app of one test sees the same bank."""
    return f"test-{uuid.uuid4().hex}/"


@pytest.fixture(params=["embedded", "etcd"])
def store(request):
    """Each data-server test runs on both stores, but for those marked embedded_only."""
    embedded_only = request.node.get_closest_marker("embedded_only")
    if request.param == "etcd" and embedded_only:
        pytest.skip(f"embedded store only: {embedded_only.args[0]}")
    return request.param


@pytest.fixture
def make_data_app():
    """create_data_app(settings, **options) for a test: every app made closes its store after the test."""
    stores = []     # not the apps: a test that makes hundreds keeps only what must be closed

    def make(settings, **options):
        app = create_data_app(settings, **options)
        stores.append(app.extensions["bank.store"])
        return app

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def data_app(store, clock, request, make_data_app):
    return make_data_app(load_data_settings(store_environ(store, request)), clock=clock)


@pytest.fixture
def real_clock_app(store, request, make_data_app):
    """Makes data apps on the test's store with the real clock, settings as data_environ's overrides."""
    def make(**overrides):
        return make_data_app(load_data_settings(store_environ(store, request, **overrides)))
    return make


@pytest.fixture
def data_client(data_app):
    return data_app.test_client()


@pytest.fixture
def b1():
    return bearer(DATA_TOKENS["b1"])


@pytest.fixture
def b2():
    return bearer(DATA_TOKENS["b2"])


@pytest.fixture
def serve_data(store, request, make_data_app):
    """Serves real data apps on the test's store (settings as data_environ's overrides) over HTTP in this process;
    stops them after (their stores are closed by make_data_app)."""
    running = []

    def serve(**overrides):
        app = make_data_app(load_data_settings(store_environ(store, request, **overrides)))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def live_data_url(serve_data):
    """A real data app served over HTTP in this process, for business apps to call."""
    return serve_data()


@pytest.fixture
def make_business_app(live_data_url):
    def make(business_id="b1", **overrides):
        return create_business_app(load_business_settings(business_environ(business_id, live_data_url, **overrides)))
    return make


@pytest.fixture
def client_headers():
    return bearer(CLIENT_TOKEN)

from dataclasses import dataclass

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from client.infra.bank_api import BankApi
from harness.broken_banks import BusinessLaunch
from harness.processes import Server, free_port, stop_all
from tests.helpers import CLIENT_TOKEN, business_environ, data_environ

# The tests that hold the bank to bounds in seconds under faults and load: `make test` runs them one after another on
# one pytest-xdist worker (--dist loadgroup) while the other worker takes everything else.
TIMED_FILES = ("test_faults.py", "test_batcher.py", "test_etcd_bank.py", "test_soak.py", "test_partitions.py",
               "test_data_server_crash.py", "test_statement_faults.py", "test_hold_expiry.py")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.parent.name == "e2e" and item.path.name in TIMED_FILES:
            item.add_marker(pytest.mark.xdist_group("timed"))


@pytest.fixture
def servers():
    """Makes servers and stops every one of them after the test, passed or failed."""
    started = []

    def make(name, config, env, log_dir, port=None, app=None):
        server = Server(name, config, port or free_port(), env, log_dir, app=app)
        started.append(server)
        return server

    yield make
    stop_all(started)


def data_server_env(journal, **overrides):
    """data_environ for a gunicorn data server journaling to journal ("" for memory only)."""
    return data_environ(DATA_JOURNAL=str(journal), DATA_FSYNC="always", DATA_THREADS="16", **overrides)


def business_server_env(business_id, data_urls, **overrides):
    """business_environ for a gunicorn business server of three workers."""
    return business_environ(business_id, data_urls, **{"BUSINESS_WORKERS": "3", "BUSINESS_THREADS": "16",
                                                       "LOCK_WAIT": "2", "DATA_TIMEOUT": "1", **overrides})


def business_server(servers, business_id, data_urls, folder, **overrides):
    """A business server of three workers (not started): the real app, or the broken bank BROKEN_BANK names."""
    launch = BusinessLaunch(business_server_env(business_id, data_urls, **overrides), folder)
    return servers(f"business{business_id[1:]}", "business/gunicorn.conf.py", launch.env, folder, app=launch.app)


def start_etcd_bank(servers, folder, **data_env):
    """Two data servers on the etcd tier (data_env: where and how), and three business servers that know both,
    started and healthy: (System, [data servers])."""
    data = [servers(f"data{i}", "data/gunicorn.conf.py", data_server_env("", **data_env), folder) for i in (1, 2)]
    urls = ",".join(server.url for server in data)
    businesses = [business_server(servers, f"b{i}", urls, folder, LOCK_WAIT="3") for i in (1, 2, 3)]
    for server in (*data, *businesses):
        server.start(wait=False)
    for server in (*data, *businesses):
        server.wait_healthy()
    return System(data[0], businesses), data


@dataclass
class System:
    data: object
    businesses: list

    def apis(self, timeout=5):
        return [BankApi(server.url, CLIENT_TOKEN, timeout) for server in self.businesses]


@pytest.fixture
def start_system(servers, tmp_path):
    """Start a data server with a journal and three business servers, as the Procfile does, on free ports."""
    def start(data_env=None, business_env=None):
        data = servers("data", "data/gunicorn.conf.py", data_server_env(tmp_path / "bank.journal",
                                                                        **(data_env or {})), tmp_path).start()
        businesses = [business_server(servers, f"b{i}", data.url, tmp_path, **(business_env or {})) for i in (1, 2, 3)]
        for business in businesses:
            business.start(wait=False)
        for business in businesses:
            business.wait_healthy()
        return System(data, businesses)
    return start


# Headless, and quiet: the machine's network is closed, so no background connections to Google's hosts.
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1000")


@pytest.fixture
def make_browser(tmp_path):
    """Makes Debian's headless Chromium under Selenium, with extra flags; quits every one after the test."""
    made = []

    def make(*flags):
        options = Options()
        options.binary_location = "/usr/bin/chromium"
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / f'chromium{len(made)}'}", *flags):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        driver.set_page_load_timeout(20)
        made.append(driver)
        return driver

    yield make
    for driver in made:
        driver.quit()

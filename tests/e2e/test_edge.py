"""The nginx edge (ops/edge.py): clients only over HTTPS verified against the bank's CA, business servers to the
data tier only with a client certificate from it, nginx's own answers in JSON, slow and greedy clients contained."""
import base64
import datetime
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from harness.edge import Edge
from harness.processes import GUNICORN, ROOT, free_port
from ops.certs import CLIENT, issue, make_all, make_authority
from tests.e2e.conftest import business_server_env, data_server_env
from tests.e2e.dashboard_page import shown_total, sign_in
from tests.helpers import CLIENT_TOKEN, DATA_TOKENS, OPERATOR_TOKEN, OTHER_CLIENT_TOKEN, bearer

UPSTREAM_TIMEOUT_SECONDS = 3     # the edge's EDGE_UPSTREAM_TIMEOUT in the test of paused business servers

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (make test installs "
                                                                       "Debian's nginx)")


@pytest.fixture
def tls(tmp_path):
    folder = tmp_path / "tls"
    make_all(folder, ["127.0.0.1", "localhost"])
    return folder


def edge_env(tls, data_port, business_ports, **overrides):
    return {"EDGE_PORT": str(free_port()), "DATA_EDGE_PORT": str(free_port()), "EDGE_TLS_CA": str(tls / "ca.pem"),
            "EDGE_TLS_CERT": str(tls / "edge.pem"), "EDGE_TLS_KEY": str(tls / "edge-key.pem"),
            "EDGE_BUSINESS_UPSTREAMS": ",".join(f"127.0.0.1:{port}" for port in business_ports),
            "EDGE_DATA_UPSTREAMS": f"127.0.0.1:{data_port}", **overrides}


def business_tls_env(tls, business_id, data_edge_url):
    return {"DATA_URLS": data_edge_url, "DATA_TLS_CA": str(tls / "ca.pem"),
            "DATA_TLS_CERT": str(tls / f"business-{business_id}.pem"),
            "DATA_TLS_KEY": str(tls / f"business-{business_id}-key.pem")}


@pytest.fixture
def edge_bank(servers, tls, tmp_path):
    """A data server and three business servers on loopback, each reached only through one edge."""
    def start(**edge_overrides):
        data = servers("data", "data/gunicorn.conf.py", data_server_env(tmp_path / "bank.journal"), tmp_path).start()
        ports = [free_port() for _ in range(3)]
        edge = Edge({**edge_env(tls, data.port, ports), "EDGE_RUN_DIR": str(tmp_path / "nginx"), **edge_overrides},
                    tmp_path)
        businesses = [servers(f"business{i}", "business/gunicorn.conf.py", business_server_env(
            f"b{i}", "", **business_tls_env(tls, f"b{i}", edge.data_url)), tmp_path, port=port)
                      for i, port in zip((1, 2, 3), ports)]
        for business in businesses:
            business.start(wait=False)
        for business in businesses:
            business.wait_healthy()
        edges.append(edge.start())
        return edge, data, businesses

    edges = []
    yield start
    for edge in edges:
        edge.stop()


def client(tls, token=CLIENT_TOKEN):
    session = requests.Session()
    session.trust_env = False       # else REQUESTS_CA_BUNDLE, where set, would replace the bank's CA
    session.verify = str(tls / "ca.pem")
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def test_a_client_banks_through_the_edge_over_https_verified_against_the_banks_ca(edge_bank, tls):
    edge, _, _ = edge_bank()
    bank = client(tls)
    deposited = bank.post(f"{edge.url}/deposit/alice/150.00", headers={"Idempotency-Key": "edge-1"}, timeout=5)
    assert deposited.status_code == 200 and deposited.json()["balance"] == "150.00"
    assert bank.post(f"{edge.url}/deposit/alice/150.00", headers={"Idempotency-Key": "edge-1"},
                     timeout=5).headers.get("Idempotent-Replayed") == "true"
    assert bank.get(f"{edge.url}/balance/alice", timeout=5).json()["balance"] == "150.00"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{edge.url}/health", verify=True, timeout=5)      # the system's CAs do not vouch for it


def test_plain_http_to_a_tls_port_is_refused_in_json_and_applies_nothing(edge_bank, tls):
    edge, _, _ = edge_bank()
    for port in (edge.port, edge.data_port):
        answer = requests.post(f"http://127.0.0.1:{port}/deposit/alice/1.00", timeout=5,
                               headers={"Authorization": f"Bearer {CLIENT_TOKEN}"})
        assert answer.status_code == 400 and answer.json()["error"] == "plain_http_to_https"
    assert client(tls).get(f"{edge.url}/balance/alice", timeout=5).status_code == 404


def test_the_data_edge_refuses_a_missing_foreign_or_expired_client_certificate_before_flask(edge_bank, tls, tmp_path):
    edge, data, _ = edge_bank()
    requests_before = requests.get(f"{data.url}/health", timeout=5).json()["requests"]
    as_b1 = bearer(DATA_TOKENS["b1"])
    none = requests.post(f"{edge.data_url}/getLock/b1/acc", headers=as_b1, verify=str(tls / "ca.pem"), timeout=5)
    assert none.status_code == 400 and none.json()["error"] == "certificate_required"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    make_authority(foreign, "another CA")
    issue(foreign, "b1", "b1", (CLIENT,), ["127.0.0.1"])
    issue(tls, "expired", "b1", (CLIENT,), ["127.0.0.1"], days=1,
          now=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30))
    for cert, key in ((foreign / "b1.pem", foreign / "b1-key.pem"), (tls / "expired.pem", tls / "expired-key.pem")):
        try:
            refused = requests.post(f"{edge.data_url}/getLock/b1/acc", headers=as_b1, verify=str(tls / "ca.pem"),
                                    cert=(str(cert), str(key)), timeout=5)
        except requests.exceptions.SSLError:
            continue        # refused at the handshake
        assert refused.status_code == 400 and refused.json()["error"] == "certificate_refused"
    assert requests.get(f"{data.url}/health", timeout=5).json()["requests"] == requests_before


def test_a_business_server_whose_certificate_is_refused_answers_503_within_its_timeout(servers, edge_bank, tls,
                                                                                       tmp_path):
    edge, _, _ = edge_bank()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    make_authority(foreign, "another CA")
    issue(foreign, "business-b2", "b2", (CLIENT,), ["127.0.0.1"])
    env = business_server_env("b2", edge.data_url, DATA_TLS_CA=str(tls / "ca.pem"),
                              DATA_TLS_CERT=str(foreign / "business-b2.pem"),
                              DATA_TLS_KEY=str(foreign / "business-b2-key.pem"))
    stranger = servers("stranger", "business/gunicorn.conf.py", env, tmp_path).start()
    started = time.monotonic()
    answer = requests.post(f"{stranger.url}/deposit/bob/1.00", headers=bearer(CLIENT_TOKEN), timeout=10)
    assert answer.status_code == 503 and answer.json()["error"] == "data_unavailable"
    assert time.monotonic() - started < 2 * 1 + 1        # DATA_TIMEOUT is 1 s
    # The edge refused its certificate: the business server says why, in its log.
    assert "certificate_refused" in stranger.log()


def test_a_bad_certificate_setting_stops_start_up_with_one_line_naming_it(tls, tmp_path):
    for overrides, name in (({"DATA_TLS_CERT": str(tmp_path / "missing.pem")}, "DATA_TLS_CERT"),
                            ({"DATA_TLS_KEY": str(tls / "business-b2-key.pem")}, "DATA_TLS_KEY")):
        env = {**os.environ, **business_server_env("b1", ""), **business_tls_env(tls, "b1", "https://127.0.0.1:8444"),
               **overrides}
        started = subprocess.run([GUNICORN, "-c", "business/gunicorn.conf.py", "-b", f"127.0.0.1:{free_port()}"],
                                 cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
        assert started.returncode == 2
        assert started.stderr.startswith(f"configuration error: {name}:") and started.stderr.count("\n") == 1


def test_slow_connections_to_both_edges_do_not_hold_up_the_bank(edge_bank, tls):
    edge, _, _ = edge_bank()
    sockets = []

    def slowloris(port, count):
        for _ in range(count):
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=5)
                sockets.append(raw)
                raw.sendall(b"\x16\x03\x01")        # the start of a TLS hello, and then nothing for a long time
            except OSError:
                pass

    for port in (edge.port, edge.data_port):
        slowloris(port, 512)
    bank = client(tls)
    deadline = time.monotonic() + 20
    slowest, count = 0.0, 0
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert bank.post(f"{edge.url}/deposit/busy/1.00", timeout=5).status_code == 200
            assert bank.get(f"{edge.url}/balance/busy", timeout=5).status_code == 200
            slowest, count = max(slowest, time.monotonic() - started), count + 1
            time.sleep(0.2)
    finally:
        for raw in sockets:
            raw.close()
    print(f"{len(sockets)} slow connections held open; {count} deposits and balances, slowest pair {slowest:.2f} s")
    assert len(sockets) >= 1000 and slowest < 1
    assert bank.get(f"{edge.url}/balance/busy", timeout=5).json()["balance"] == f"{count}.00"


def test_a_client_over_its_rate_limit_gets_429_json_and_others_are_not_slowed(edge_bank, tls):
    edge, _, _ = edge_bank(EDGE_RATE_LIMIT="5", EDGE_RATE_BURST="5")
    greedy = client(tls)
    answers = [greedy.get(f"{edge.url}/balance/nobody", timeout=5) for _ in range(30)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and limited[0].json()["error"] == "rate_limited" and limited[0].headers["Retry-After"] == "1"
    other = client(tls, "other-client-token")
    assert other.get(f"{edge.url}/balance/nobody", timeout=5).status_code == 404


def test_metrics_and_the_servers_own_json_errors_come_through_the_edge(edge_bank, tls):
    edge, _, _ = edge_bank()
    operator = client(tls, OPERATOR_TOKEN)
    assert "bank_http_requests_total" in operator.get(f"{edge.url}/metrics", timeout=5).text
    unknown = operator.get(f"{edge.url}/no/such/route", timeout=5)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    too_large = operator.post(f"{edge.url}/deposit/alice/1.00", data=b"x" * 200_000, timeout=5)
    assert too_large.status_code == 413 and too_large.json()["error"] == "request_entity_too_large"


def pinned(certificate_path):
    """Chromium's --ignore-certificate-errors-spki-list value for a certificate: its key, pinned."""
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    key = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(key).digest()).decode()


def test_the_dashboard_works_over_https_through_the_data_edge_with_the_operator_token(edge_bank, tls, make_browser):
    edge, _, _ = edge_bank()
    client(tls).post(f"{edge.url}/deposit/dash-edge/42.00", timeout=5)
    browser = make_browser(f"--ignore-certificate-errors-spki-list={pinned(tls / 'edge.pem')}")
    browser.get(f"{edge.data_url}/dashboard")
    sign_in(browser, OPERATOR_TOKEN)
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "board").is_displayed())
    assert shown_total(browser) == 42_00
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []
    # The operators' pages need no client certificate; every other data route still does.
    unlocked = requests.post(f"{edge.data_url}/getLock/b1/acc", headers=bearer(DATA_TOKENS["b1"]),
                             verify=str(tls / "ca.pem"), timeout=5)
    assert unlocked.status_code == 400 and unlocked.json()["error"] == "certificate_required"


def test_the_edge_moves_on_from_a_dead_business_server_where_that_is_safe(edge_bank, tls):
    edge, _, businesses = edge_bank()
    bank = client(tls)
    for _ in range(6):      # keep-alive connections to every business server
        bank.get(f"{edge.url}/balance/carol", timeout=5)
    businesses[0].kill()
    unkeyed = []
    for i in range(6):      # every business server's turn comes, the dead one's included
        assert bank.get(f"{edge.url}/balance/nobody", timeout=5).status_code == 404
        assert bank.post(f"{edge.url}/deposit/carol/1.00", headers={"Idempotency-Key": f"dead-{i}"},
                         timeout=5).status_code == 200
        unkeyed.append(bank.post(f"{edge.url}/deposit/carol/0.01", timeout=5))
    # A write without a key that went out on a connection to the dead server is not sent again (it might have been
    # applied): 502, and the client knows the outcome is unknown. Every other one went to a live server.
    assert {answer.status_code for answer in unkeyed} <= {200, 502}
    assert all(answer.json()["error"] == "upstream_unavailable" for answer in unkeyed if answer.status_code == 502)
    applied = sum(1 for answer in unkeyed if answer.status_code == 200)
    assert bank.get(f"{edge.url}/balance/carol", timeout=5).json()["balance"] == f"6.{applied:02d}"


def assert_json_refusal(answer, status, error):
    assert (answer.status_code, answer.headers["Content-Type"], answer.json()["error"]) == (
        status, "application/json", error), answer.text


def test_writes_keyed_or_not_get_json_when_no_business_server_answers_paused_or_stopped(edge_bank, tls):
    edge, _, businesses = edge_bank(EDGE_UPSTREAM_TIMEOUT=str(UPSTREAM_TIMEOUT_SECONDS))
    bank = client(tls)
    assert bank.post(f"{edge.url}/deposit/carol/1.00", timeout=5).status_code == 200
    for business in businesses:
        business.signal(signal.SIGSTOP)
    try:
        for headers in ({}, {"Idempotency-Key": "paused-1"}):
            started = time.monotonic()
            answer = bank.post(f"{edge.url}/deposit/carol/1.00", headers=headers, timeout=60)
            # The client waits the setting once, not once per business server the keyed write moves on to.
            waited = time.monotonic() - started
            assert_json_refusal(answer, 504, "upstream_timeout")
            assert waited < 2 * UPSTREAM_TIMEOUT_SECONDS, f"{headers}: answered after {waited:.1f} s"
    finally:
        for business in businesses:
            business.signal(signal.SIGCONT)
    for business in businesses:
        business.stop()
    for headers in ({}, {"Idempotency-Key": "stopped-1"}):
        assert_json_refusal(bank.post(f"{edge.url}/deposit/carol/1.00", headers=headers, timeout=30), 502,
                            "upstream_unavailable")


def test_the_postman_collection_passes_through_the_edge_over_tls(edge_bank, tls):
    edge, _, _ = edge_bank()
    newman = ROOT / "node_modules" / ".bin" / "newman"
    assert newman.exists(), "newman is not installed: `make test` runs `npm ci` first"
    result = subprocess.run(
        [str(newman), "run", "postman/bank.postman_collection.json", "-e", "postman/cluster.postman_environment.json",
         "--env-var", f"baseUrl={edge.url}", "--env-var", f"dataUrl={edge.data_url}",
         "--env-var", f"clientToken={CLIENT_TOKEN}", "--env-var", f"otherClientToken={OTHER_CLIENT_TOKEN}",
         "--env-var", f"operatorToken={OPERATOR_TOKEN}", "--env-var", "clientName=tester",
         "--env-var", f"dataToken={DATA_TOKENS['b1']}",
         "--ssl-extra-ca-certs", str(tls / "ca.pem"), "--ssl-client-cert", str(tls / "business-b1.pem"),
         "--ssl-client-key", str(tls / "business-b1-key.pem"), "--color", "off"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    print(result.stdout[-3000:], result.stderr[-2000:])
    assert result.returncode == 0 and "AssertionError" not in result.stdout

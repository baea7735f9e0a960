"""FailoverPools: a server that takes no connection is skipped; one that took the request and failed is not
asked again for it unless the request may be sent again; a server that failed is passed over for a while."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.processes import free_port
from shared.failover import FailoverPools, NotAnswered, PassOver


class Server:
    """A real HTTP server on loopback that answers {"server": name}, or closes without answering."""

    def __init__(self, name, answers=True, status=200, hangs=0.0):
        self.calls = 0
        self.done = threading.Event()       # set after the test: a hanging server answers at last
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.calls += 1
                outer.done.wait(hangs)  # a server slow to answer: what the test is about
                if not answers:
                    self.close_connection = True
                    return
                body = json.dumps({"server": name, **({"error": "store_unavailable"} if status >= 500 else {})})
                body = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.serving = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.serving.start()


@pytest.fixture
def made():
    servers = []

    def make(name, answers=True, status=200, hangs=0.0):
        servers.append(Server(name, answers, status, hangs))
        return servers[-1]

    yield make
    for server in servers:
        server.done.set()
        server.httpd.shutdown()
        server.httpd.server_close()
        server.serving.join(5)


def test_a_server_taking_no_connection_is_skipped_and_the_answering_one_is_asked_first_next_time(made):
    live = made("live")
    pools = FailoverPools([f"http://127.0.0.1:{free_port()}", live.url])
    for _ in range(3):
        assert pools.send("GET", "/", None, {}, 2)[1] == {"server": "live"}
    assert live.calls == 3


def test_a_server_that_took_the_request_and_failed_is_not_asked_again_for_it(made):
    failing, other = made("failing", answers=False), made("other")
    pools = FailoverPools([failing.url, other.url])
    with pytest.raises(NotAnswered):
        pools.send("GET", "/", None, {}, 2)
    assert (failing.calls, other.calls) == (1, 0)
    assert pools.send("GET", "/", None, {}, 2)[1] == {"server": "other"}


def test_no_server_taking_a_connection_is_not_answered():
    with pytest.raises(NotAnswered, match="no server took a connection"):
        FailoverPools([f"http://127.0.0.1:{free_port()}"]).send("GET", "/", None, {}, 1)


def test_a_server_that_timed_out_is_passed_over_even_when_the_other_fails_too(made):
    silent, other = made("silent", hangs=3), made("other", status=503)
    pools = FailoverPools([silent.url, other.url])
    with pytest.raises(NotAnswered):
        pools.send("GET", "/", None, {}, 0.5)
    for _ in range(5):
        # A quick 503 from the other is the answer each time, not a timeout from the silent one again.
        started = time.monotonic()
        assert pools.send("GET", "/", None, {}, 0.5)[0].status == 503
        assert time.monotonic() - started < 0.4
    assert (silent.calls, other.calls) == (1, 5)


def test_a_request_that_may_be_sent_again_goes_on_to_the_next_server_after_a_timeout_or_a_5xx(made):
    silent, failing, live = made("silent", hangs=3), made("failing", status=503), made("live")
    pools = FailoverPools([silent.url, failing.url, live.url])
    assert pools.send("GET", "/", None, {}, 0.5, resend=True)[1] == {"server": "live"}
    assert (silent.calls, failing.calls, live.calls) == (1, 1, 1)


def test_a_5xx_is_answered_as_it_is_when_the_request_may_not_be_sent_again(made):
    failing, live = made("failing", status=503), made("live")
    pools = FailoverPools([failing.url, live.url])
    response, payload = pools.send("GET", "/", None, {}, 1)
    assert response.status == 503 and payload["server"] == "failing" and live.calls == 0
    assert pools.send("GET", "/", None, {}, 1)[1] == {"server": "live"}


def test_pass_over_puts_a_failed_server_last_until_its_time_is_up():
    now = [0.0]
    servers = PassOver(3, seconds=5, clock=lambda: now[0])
    servers.failed(0)                       # passed over until 5
    now[0] = 1
    servers.failed(1)                       # until 6
    servers.failed(2, seconds=0.5)          # until 1.5
    now[0] = 1.6
    assert servers.order() == [2, 0, 1] and servers.available() == [2]
    servers.failed(2, seconds=0.1)          # until 1.7: every one is passed over, so the one due back soonest
    assert servers.available() == [2]
    now[0] = 5.5
    assert servers.order(1) == [2, 0, 1] and servers.available() == [0, 2]
    servers.answered(1)
    assert servers.available() == [0, 1, 2]


def test_a_server_that_answers_5xx_again_and_again_is_passed_over_twice_as_long_each_time():
    now = [0.0]
    servers = PassOver(2, seconds=30, clock=lambda: now[0])
    for expected_seconds in (1, 2, 4, 8, 16, 30, 30):
        servers.failed_answer(0)
        now[0] += expected_seconds - 0.01
        assert servers.order() == [1, 0], f"back before {expected_seconds} s"
        now[0] += 0.02
        assert servers.order() == [0, 1], f"not back after {expected_seconds} s"
    for _ in range(5000):           # a server that stays sick under load: the count and the pass-over stay bounded
        servers.failed_answer(0)
    now[0] += 30.01
    assert servers.order() == [0, 1]
    servers.answered(0)             # one answer below 500 and it starts again from one second
    servers.failed_answer(0)
    now[0] += 1.01
    assert servers.order() == [0, 1]


def test_a_data_server_that_cannot_reach_its_store_sends_the_business_server_to_the_next(made, live_data_url,
                                                                                          make_business_app,
                                                                                          client_headers):
    cut_off = made("cut-off", status=503)
    bank = make_business_app(DATA_URLS=f"{cut_off.url},{live_data_url}").test_client()
    deposited = bank.post("/deposit/alice/7.00", headers={**client_headers, "Idempotency-Key": "k-1"})
    assert deposited.status_code == 200 and deposited.json["balance"] == "7.00"
    assert bank.get("/balance/alice", headers=client_headers).json["balance"] == "7.00"
    assert cut_off.calls >= 1

"""FailoverPools: a server that takes no connection is skipped; one that took the request and failed is not
asked again for it; the next call starts where the last answer came from."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from harness.processes import free_port
from shared.failover import FailoverPools, NotAnswered


class Server:
    """A real HTTP server on loopback that answers {"server": name}, or closes without answering."""

    def __init__(self, name, answers=True):
        self.calls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.calls += 1
                if not answers:
                    self.close_connection = True
                    return
                body = json.dumps({"server": name}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def made():
    servers = []

    def make(name, answers=True):
        servers.append(Server(name, answers))
        return servers[-1]

    yield make
    for server in servers:
        server.httpd.shutdown()
        server.httpd.server_close()


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

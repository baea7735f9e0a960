"""A business server's batcher: the one process its workers hand every operation to, so that the operations of
all its workers share a lock cycle (business/application/queue_service.py) rather than each worker its own.

It listens on a Unix socket in a folder only its user may enter, a thread per worker connection, and serves
until its gunicorn master goes: business/batcher_supervisor.py starts it from the master with a pipe on its stdin
and starts it again if it dies; it ignores SIGTERM and SIGINT so that a stopping server's workers finish their
requests, and stops when that pipe closes (the master stopped or was killed). Run as `python -m business.batcher`.
"""
import logging
import os
import signal
import socket
import sys
import threading

from business import bootstrap
from business.application.errors import BankError, ServiceUnavailable
from business.infra.batcher_wire import MAX_LINE_BYTES, SOCKET_ENV, WireError, answer_line, parse_request
from shared.settings import exit_on_settings_error, load_business_settings

MAX_CONNECTIONS = 1024      # a worker thread keeps one: BUSINESS_WORKERS x BUSINESS_THREADS up to this (32 as shipped)
FAILED = ServiceUnavailable("data_unavailable", "the business server failed to finish the operation; retry with "
                                                "the same Idempotency-Key to learn the outcome")

log = logging.getLogger("bank.business")
_serving = threading.local()


def current_request_id():
    """The request the calling thread serves: what the data calls of a lock cycle it leads are sent for."""
    return getattr(_serving, "request_id", None)


class Batcher:
    def __init__(self, queue, listener):
        self._queue, self._listener = queue, listener
        self._connections = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def serve_forever(self):
        while True:
            connection, _ = self._listener.accept()
            if not self._connections.acquire(blocking=False):
                log.error("batcher: more than %d connections; one refused", MAX_CONNECTIONS)
                connection.close()
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection):
        try:
            with connection, connection.makefile("rb") as lines:
                for line in iter(lambda: lines.readline(MAX_LINE_BYTES), b""):
                    connection.sendall(self._answer(line))
        except OSError as error:
            log.info("batcher: a worker connection ended: %s", error)
        except WireError as error:
            log.error("batcher: a worker sent a line it may not: %s", error)
        finally:
            self._connections.release()

    def _answer(self, line):
        request = parse_request(line)
        _serving.request_id = request.request_id
        try:
            return answer_line(self._queue.submit(request.operation))
        except BankError as refusal:
            return answer_line(refusal)
        except Exception:   # a bug: the caller must hear back, and the outcome may be applied
            log.exception("batcher: %s failed", request.operation.kind)
            return answer_line(FAILED)


def listen(path):
    """A listening Unix socket at path, in a folder only this user may enter (a connection can move money)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(MAX_CONNECTIONS)
    return listener


def _stop_when_the_master_goes():
    sys.stdin.buffer.read()
    os._exit(0)     # daemon threads in a lock cycle must not hold the exit up; their leases run out by LOCK_TTL


def main():
    settings = exit_on_settings_error(load_business_settings)
    logging.basicConfig(level=settings.log_level,
                        format="[%(asctime)s] [batcher %(process)d] %(levelname)s %(message)s")
    for ignored in (signal.SIGTERM, signal.SIGINT):
        signal.signal(ignored, signal.SIG_IGN)
    threading.Thread(target=_stop_when_the_master_goes, daemon=True).start()
    path = os.environ[SOCKET_ENV]
    queue = bootstrap.queue_service(settings, current_request_id)
    bootstrap.hold_expiry(settings, queue, current_request_id).start()      # ends with the batcher
    Batcher(queue, listen(path)).serve_forever()


if __name__ == "__main__":
    main()

"""A worker's side of its server's batcher (business/batcher.py): each of its threads keeps one Unix-socket
connection to it and hands it one operation at a time."""
import logging
import socket
import threading

from business.application.errors import ServiceUnavailable
from business.application.ports import OperationQueue
from business.infra.batcher_wire import MAX_LINE_BYTES, WireError, parse_answer, request_line

log = logging.getLogger("bank.business")

NOT_SENT = ("batcher_unavailable", "this business server's batcher is restarting; nothing was applied, try again")
NOT_ANSWERED = ("data_unavailable", "this business server's batcher did not answer; retry with the same "
                                    "Idempotency-Key to learn the outcome")


class BatcherQueue(OperationQueue):
    def __init__(self, path, timeout, request_id_source=lambda: None):
        self._path, self._timeout, self._request_id = path, timeout, request_id_source
        self._local = threading.local()

    def submit(self, operation):
        line = request_line(operation, self._request_id())
        connection = self._send(line)
        try:
            answer = connection.readline(MAX_LINE_BYTES)
        except OSError as error:        # the timeout included
            answer = b""
            log.warning("batcher: no answer: %s", error)
        if not answer.endswith(b"\n"):
            self._drop()
            raise ServiceUnavailable(*NOT_ANSWERED)
        try:
            outcome = parse_answer(answer)
        except WireError as error:
            self._drop()
            log.error("batcher: %s", error)
            raise ServiceUnavailable(*NOT_ANSWERED) from None
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _send(self, line):
        """Send line on this thread's connection; a connection the batcher closed since is opened again once.

        Unix sockets refuse a write to a closed peer, so a failed send means the batcher never read it.
        """
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.raw.sendall(line)
                return connection
            except OSError as error:
                self._drop()
                if attempt:
                    log.warning("batcher: %s", error)
        raise ServiceUnavailable(*NOT_SENT)

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            raw.settimeout(self._timeout)
            try:
                raw.connect(self._path)
            except OSError as error:
                raw.close()
                log.warning("batcher at %s: %s", self._path, error)
                raise ServiceUnavailable(*NOT_SENT) from None
            connection = self._local.connection = _Connection(raw)
        return connection

    def _drop(self):
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class _Connection:
    __slots__ = ("raw", "reader")

    def __init__(self, raw):
        self.raw, self.reader = raw, raw.makefile("rb")

    def readline(self, limit):
        return self.reader.readline(limit)

    def close(self):
        self.reader.close()
        self.raw.close()

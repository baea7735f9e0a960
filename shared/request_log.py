"""What a server says about the requests it answers: one DEBUG line each, and a periodic INFO summary."""
import collections
import logging
import os
import sys
import threading
import time
import weakref

_request_logs = weakref.WeakSet()


def flush_all():
    """Log what every request log of this process has not summarized yet: a worker calls it as it exits."""
    for request_log in list(_request_logs):
        request_log.flush()


class RequestLog:
    """Logs each request at DEBUG and, at INFO, one summary line every `period` seconds in which there were any."""

    def __init__(self, server_name, log_level, period):
        self.logger = logging.getLogger(f"bank.{server_name}")
        if not self.logger.handlers:
            handler = _StderrHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            self.logger.addHandler(handler)
            self.logger.propagate = False
        self.logger.setLevel(log_level)
        self._server_name, self._period = server_name, period
        self._mutex = threading.Lock()
        self._classes = collections.Counter()      # "2xx", "4xx", "5xx" -> answers since the last summary
        self._slowest_ms = 0.0
        self._since = time.monotonic()
        self._summarizing = None                    # the pid whose thread writes summaries: one per worker
        _request_logs.add(self)

    def request(self, fields, status, elapsed_ms):
        """Count one answer; fields: (name, value) pairs for its DEBUG line, built only when DEBUG is on."""
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(" ".join(f"{name}={value}" for name, value in fields()))
        if not self.logger.isEnabledFor(logging.INFO):
            return
        with self._mutex:
            self._classes[f"{status // 100}xx"] += 1
            self._slowest_ms = max(self._slowest_ms, elapsed_ms)
            if self._summarizing != os.getpid():
                # Started on the first request, in the worker that serves it, never in a master before a fork.
                self._summarizing = os.getpid()
                threading.Thread(target=self._summarize, name="request-summary", daemon=True).start()

    def flush(self):
        """Log one summary line of the requests answered since the last one, if there were any."""
        with self._mutex:
            classes, slowest, since = self._classes, self._slowest_ms, self._since
            self._classes, self._slowest_ms, self._since = collections.Counter(), 0.0, time.monotonic()
        if classes:
            answers = ", ".join(f"{name} {count}" for name, count in sorted(classes.items()))
            self.logger.info(f"server={self._server_name} pid={os.getpid()} last {time.monotonic() - since:.0f} s: "
                             f"{sum(classes.values())} requests ({answers}), slowest {slowest:.0f} ms")

    def _summarize(self):
        while True:
            time.sleep(self._period)
            self.flush()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time, so that redirection and test capture both see the lines."""

    def emit(self, record):
        self.stream = sys.stderr
        super().emit(record)

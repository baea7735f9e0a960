"""JSON over HTTP to one of several equivalent servers, keep-alive pooled, moving on only when that is safe.

A server that took no connection, timed out or failed is passed over for a while, so that a server alive but
unreachable (a partition) costs one timeout, not one per call.
"""
import json
import logging
import time
from typing import NamedTuple

import urllib3

log = logging.getLogger("bank.failover")

# The caller's deadline for one attempt, in milliseconds since the epoch: a server that reads the request only after
# it (queued while paused, say) knows no one waits for its answer any more.
ANSWER_BY_HEADER = "X-Answer-By"
PASS_OVER_SECONDS = 30.0    # how long a server that did not answer is asked only after the others (last, not never)
# The same for one that answered 5xx: quickly, so it costs less than a timeout; doubled with each 5xx in a row (up
# to PASS_OVER_SECONDS), so that a server that stays sick (cut off from its store) is not asked every second.
FAILED_ANSWER_SECONDS = 1.0


class NotAnswered(Exception):
    """No server answered: none took the connection, or the one that did failed after the request was sent."""


class Answer(NamedTuple):
    response: object            # urllib3's HTTPResponse: its status and headers
    payload: dict               # its body, decoded from JSON


class PassOver:
    """Which of several equivalent servers to ask first: those that failed lately come last, soonest-due first."""

    def __init__(self, count, seconds=PASS_OVER_SECONDS, clock=time.monotonic):
        self._until = [0.0] * count
        self._failed_answer_seconds = [0.0] * count     # the last pass-over for a 5xx in a row; 0: none
        self._seconds, self._clock = seconds, clock

    def order(self, first=0):
        """Every index, from first on, the ones passed over moved to the end."""
        now, count = self._clock(), len(self._until)
        indices = [(first + step) % count for step in range(count)]
        passed = sorted((i for i in indices if self._until[i] > now), key=lambda i: self._until[i])
        return [i for i in indices if self._until[i] <= now] + passed

    def available(self):
        """The indices not passed over now; if every one is, the one due back soonest."""
        now = self._clock()
        fresh = [i for i, until in enumerate(self._until) if until <= now]
        return fresh or [min(range(len(self._until)), key=self._until.__getitem__)]

    def failed(self, index, seconds=None):
        self._until[index] = self._clock() + (self._seconds if seconds is None else seconds)

    def failed_answer(self, index):
        """It answered 5xx: passed over FAILED_ANSWER_SECONDS, twice that after two in a row, and so on."""
        last = self._failed_answer_seconds[index]
        self._failed_answer_seconds[index] = min(self._seconds, 2 * last if last else FAILED_ANSWER_SECONDS)
        self.failed(index, self._failed_answer_seconds[index])

    def answered(self, index):
        self._until[index] = 0.0
        self._failed_answer_seconds[index] = 0.0


class FailoverPools:
    """Sends to the server that answered last, or the next when it takes no connection (nothing was sent, so
    moving on is always safe). One that took a request and failed is not asked again for it: what it did is
    unknown, so the request goes to the next server only if the caller says it may be sent again (resend)."""

    def __init__(self, base_urls, connections=16, tls=None, stamp_answer_by=False):
        """tls: the TlsFiles (shared/settings.py) https:// servers are verified with and shown. stamp_answer_by:
        every attempt says by when (ANSWER_BY_HEADER) its answer is waited for."""
        # Thread-safe; no retries inside urllib3, for the same reason.
        self._pools = [urllib3.connection_from_url(url, maxsize=connections, block=False, retries=False,
                                                   **_tls_options(url, tls)) for url in base_urls]
        self._current = 0
        self._pass_over = PassOver(len(self._pools))
        self._tls_refused = set()
        self._stamp_answer_by = stamp_answer_by

    def send(self, method, url, body, headers, timeout, resend=False):
        """The Answer of the first server to answer below 500; NotAnswered if none did.

        resend: the request is safe to send again, so a server that took it and failed (no answer, or 5xx) does
        not end the call: the next is asked. Otherwise a 5xx answer is returned as it is. When every server
        failed, the last failure stands: its 5xx Answer, or its NotAnswered.
        """
        failed_answer = not_answered = None
        for index in self._pass_over.order(self._current):
            if self._stamp_answer_by:
                headers = {**headers, ANSWER_BY_HEADER: str(int((time.time() + timeout) * 1000))}
            try:
                response = self._pools[index].urlopen(method, url, body=body, headers=headers, retries=False,
                                                      timeout=urllib3.Timeout(total=timeout))
                payload = json.loads(response.data)
            except urllib3.exceptions.ConnectTimeoutError:
                self._pass_over.failed(index)
                continue
            except (urllib3.exceptions.HTTPError, ValueError) as error:
                if isinstance(error, urllib3.exceptions.SSLError) and index not in self._tls_refused:
                    self._tls_refused.add(index)        # a refused certificate stays refused: said once
                    log.error("server %d %s: TLS refused: %s", index + 1, self._pools[index].host, error)
                self._pass_over.failed(index)
                self._current = (index + 1) % len(self._pools)
                failed_answer = None
                not_answered = NotAnswered(f"server {index + 1} {method} {url}: {type(error).__name__}")
                if resend:
                    continue
                raise not_answered from None
            if response.status < 500:
                self._pass_over.answered(index)
                self._current = index
                return Answer(response, payload)
            # A server that fails (its own store unreachable, say) is not the first one asked next time.
            self._pass_over.failed_answer(index)
            self._current = (index + 1) % len(self._pools)
            failed_answer, not_answered = Answer(response, payload), None
            if not resend:
                return failed_answer
        if failed_answer is not None:
            return failed_answer
        raise not_answered or NotAnswered(f"no server took a connection for {method} {url}")


def _tls_options(url, tls):
    if not url.startswith("https://"):
        return {}
    options = {"cert_reqs": "CERT_REQUIRED", "ca_certs": tls.ca if tls else None}
    if tls and tls.cert:
        options.update(cert_file=tls.cert, key_file=tls.key)
    return options

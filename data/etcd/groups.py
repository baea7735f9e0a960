"""Many requests' transactions sent to etcd as one: each nested in the one sent, with its own compare and its own
branches, so each succeeds or fails on its own and all are one raft entry, one fsync, one revision.

etcd evaluates every nested compare against the state before the transaction, and refuses one that writes a key
twice: two requests that touch the same key never share a transaction (each names the keys it touches, and one
that shares a key with a request waiting to be sent goes to etcd by itself, at once).
"""
import threading
import time

from data.etcd.gateway import nested, put
from data.store import StoreUnavailable

MOST_OPERATIONS = 512       # of the transaction sent (etcd runs with --max-txn-ops 4096)


class NotSent(StoreUnavailable):
    """The request did not go to etcd: nothing was applied."""


class _Request:
    def __init__(self, keys, compare, success, failure, deadline):
        self.keys, self.deadline = keys, deadline
        self.operation = nested(compare, success, failure)
        self.size = len(compare) + len(success) + len(failure)
        self.writes = any("request_put" in operation for operation in success)
        self.sent = False
        self.answer = self.error = None
        self.done = threading.Event()


class GroupedTxns:
    """One transaction in flight at a time (make bench measured one against two or four: one groups the most and
    costs the least); whatever is asked for meanwhile goes in the next."""

    def __init__(self, gateway, quota_key):
        """quota_key: a key of its own that every transaction that writes also puts, for etcd 3.4 to weigh it
        against its quota at all: it counts a transaction's top-level puts only, and would let nested ones pass."""
        self._etcd = gateway
        self._quota_put = put(quota_key, "")
        self._pending = []
        self._changed = threading.Condition()
        self._sender = None
        self._closed = False

    def txn(self, keys, compare, success, failure, timeout):
        """One request's transaction, sent with others': its answer ({"header", "succeeded", "responses"}), or
        StoreUnavailable (not sent, if it could not go within timeout; else what it did is unknown)."""
        timeout = min(timeout, self._etcd.timeout)
        request = _Request(set(keys), compare, success, failure, time.monotonic() + timeout)
        with self._changed:
            alone = self._closed or any(request.keys & waiting.keys for waiting in self._pending)
            if not alone:
                self._pending.append(request)
        if alone:
            # It could go in no transaction before those waiting have gone: it goes now, by itself.
            return self._etcd.txn(compare, success, failure, timeout=timeout)
        with self._changed:
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_forever, name="etcd-groups", daemon=True)
                self._sender.start()
            self._changed.notify()
        if not request.done.wait(timeout):
            with self._changed:
                if not request.sent:
                    self._pending.remove(request)
                    raise NotSent("etcd was too busy to take the request within its time; nothing was sent")
            request.done.wait()         # in flight: the call's own timeout, at most this request's, bounds it
        if request.error is not None:
            raise request.error
        return request.answer

    def close(self):
        """End the sender once what is pending has gone; requests made after this go alone."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._sender is not None:
            self._sender.join(self._etcd.timeout + 1)

    def _send_forever(self):
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                group = self._take_group()
            self._send(group)

    def _take_group(self):
        """The pending requests that go together, oldest first, within MOST_OPERATIONS (txn() keeps the
        pending ones free of shared keys)."""
        group, size = [], 0
        for request in self._pending:
            if group and size + request.size > MOST_OPERATIONS:
                break
            group.append(request)
            size += request.size
        for request in group:
            self._pending.remove(request)
            request.sent = True
        return group

    def _send(self, group):
        timeout = min(request.deadline for request in group) - time.monotonic()
        try:
            if timeout <= 0:
                raise NotSent("etcd was too busy to take the request within its time; nothing was sent")
            weighed = [self._quota_put] if any(request.writes for request in group) else []
            answer = self._etcd.txn(success=[request.operation for request in group] + weighed, timeout=timeout)
            answers = [{"header": answer["header"], "succeeded": response["response_txn"].get("succeeded", False),
                        "responses": response["response_txn"].get("responses", [])}
                       for response in answer["responses"][:len(group)]]
            if len(answers) != len(group):
                raise StoreUnavailable(f"etcd answered {len(answers)} of a transaction's {len(group)} requests")
        except Exception as error:      # every request of the group is told, whatever went wrong, and this goes on
            for request in group:
                request.error = error
                request.done.set()
            return
        for request, request_answer in zip(group, answers):
            request.answer = request_answer
            request.done.set()

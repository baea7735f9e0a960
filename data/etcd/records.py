"""The etcd store's operation records, and the etcd leases of all it keeps for a retention (records, history).

Keys under ETCD_PREFIX: o/k/{id} and o/r/{id}, a keyed or a retry operation record, each under a lease shared
by the records made in the same RECORD_LEASE_SPAN_SECONDS and outliving their retention by at most two spans
(store.py lists the other keys). The caps are checked against a count taken at most RECOUNT_AFTER_SECONDS ago plus
what this process has recorded since, and counted again before any refusal: with several data servers, the cap may
be passed by what the others recorded in that time.
"""
import json
import math
import threading
import time
from typing import NamedTuple

from data.etcd.gateway import count, decode, delete, get, kvs, put
from data.store import OperationConflict, RecordsFull

RECORD_LEASE_SPAN_SECONDS = 60      # the records made within one span share one etcd lease
RECOUNT_AFTER_SECONDS = 1.0         # a count of the records stands in for counting them again this long


class CommittedBefore(Exception):
    """Every operation of a commit is recorded already, for the same requests: the commit was applied before."""

    def __init__(self, results):
        super().__init__("the commit was applied before")
        self.results = results      # the operations' first results


class _Count(NamedTuple):
    held: int                   # records of a kind held, as counted plus what this process recorded since
    counted_at: float           # time.monotonic() of the count


class _Span(NamedTuple):
    kind: object                # True: keyed records, False: retry records, "history": history entries, "holds"
    span: int                   # the made-at time in whole RECORD_LEASE_SPAN_SECONDS


class EtcdRecords:
    """Operation records in etcd: the parts of a transaction that write, find and count them."""

    def __init__(self, gateway, keys, settings, wall_clock):
        self._etcd, self._keys, self._wall_clock = gateway, keys, wall_clock
        # Seconds each kind lives: keyed and retry operation records, history entries.
        self._retention = {True: settings.operation_retention, False: settings.retry_record_retention,
                           "history": settings.history_retention, "holds": settings.hold_retention}
        self._limit = {True: settings.operation_limit, False: settings.retry_record_limit}
        self._leases = {}                   # _Span -> etcd lease id
        self._counted = {}                  # keyed -> _Count
        self._mutex = threading.Lock()

    def key(self, op):
        return self._keys.record(op["id"], op.get("keyed", True))

    def ranges(self, op_ids):
        return [get(self._keys.record(op_id, keyed)) for op_id in op_ids for keyed in (True, False)]

    def recorded(self, responses, op_ids):
        now, recorded = self._wall_clock(), {}
        for index, op_id in enumerate(op_ids):
            for keyed, response in zip((True, False), responses[2 * index:2 * index + 2]):
                record = self._live_record(response, keyed, now)
                if record is not None:
                    recorded[op_id] = {"request": record["request"], "result": record["result"]}
        return recorded

    def raise_if_recorded(self, operations):
        """CommittedBefore if every operation id is recorded, for the same requests; OperationConflict if some
        are but not so; nothing if none is."""
        if operations:
            answer = self._etcd.txn(success=self.ranges([op["id"] for op in operations]), resend=True)
            self.raise_if_found(answer["responses"], operations)

    def raise_if_found(self, record_ranges, operations):
        """raise_if_recorded from the answers to ranges of the operations' ids."""
        found = self.recorded(record_ranges, [op["id"] for op in operations])
        if not found:
            return
        if all(op["id"] in found and found[op["id"]]["request"] == op["request"] for op in operations):
            raise CommittedBefore([found[op["id"]]["result"] for op in operations])
        raise OperationConflict("an operation id of this commit is recorded for another request")

    def _live_record(self, response, keyed, now):
        if not kvs(response):
            return None
        record = json.loads(decode(kvs(response)[0]["value"]))
        return record if record["at"] >= now - self._retention[keyed] else None

    def require_room(self, operations):
        for keyed in (True, False):
            needed = sum(1 for op in operations if op.get("keyed", True) == keyed)
            if not needed:
                continue
            with self._mutex:
                held, counted_at = self._counted.get(keyed, _Count(0, -math.inf))
                if time.monotonic() - counted_at < RECOUNT_AFTER_SECONDS and held + needed <= self._limit[keyed]:
                    # Counted as held from now on, taken or not: a count too high only brings a recount sooner.
                    self._counted[keyed] = _Count(held + needed, counted_at)
                    continue
            prefix, counted_at = self._keys.records(keyed), time.monotonic()
            held = count(self._etcd.txn(success=[get(prefix, prefix=True, count_only=True)],
                                        resend=True)["responses"][0])
            if held + needed > self._limit[keyed]:
                held = self._require_room_among_live(prefix, keyed, needed)
            with self._mutex:
                self._counted[keyed] = _Count(held + needed, counted_at)

    def _require_room_among_live(self, prefix, keyed, needed):
        """Near the cap, count only records within their retention, dropping the others (their etcd lease may
        outlive them by a span); refuse if there is still no room, saying when the oldest live one expires. The
        live records' count."""
        now, oldest_kept = self._wall_clock(), self._wall_clock() - self._retention[keyed]
        made = [(json.loads(decode(kv["value"]))["at"], decode(kv["key"]))
                for kv in kvs(self._etcd.txn(success=[get(prefix, prefix=True)], resend=True)["responses"][0])]
        expired = [key for at, key in made if at < oldest_kept]
        for start in range(0, len(expired), 1000):
            self._etcd.txn(success=[delete(key) for key in expired[start:start + 1000]], resend=True)
        live = sorted(at for at, _ in made if at >= oldest_kept)
        if len(live) + needed > self._limit[keyed]:
            raise RecordsFull("idempotency" if keyed else "commit retry",
                              max(1.0, live[0] + self._retention[keyed] - now))
        return len(live)

    def put(self, op):
        keyed = op.get("keyed", True)
        at = int(self._wall_clock())
        value = json.dumps({"request": op["request"], "result": op["result"], "at": at}, separators=(",", ":"))
        return put(self.key(op), value, self.span_lease(keyed, at))

    def span_lease(self, kind, at):
        """One etcd lease for the records (or history entries: kind "history") made in the same span, outliving
        their retention by at most a span."""
        span = _Span(kind, at // RECORD_LEASE_SPAN_SECONDS)
        with self._mutex:
            lease = self._leases.get(span)
            if lease is None:
                lease = self._etcd.grant(self._retention[kind] + 2 * RECORD_LEASE_SPAN_SECONDS)
                self._leases = {key: value for key, value in self._leases.items() if key.span >= span.span}
                self._leases[span] = lease
            return lease

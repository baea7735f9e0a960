"""Operation records: each recorded operation's first result, kept its retention, never evicted early."""
import collections
from typing import NamedTuple

from data.store import RecordsFull


class RecordCounts(NamedTuple):
    idempotency: int            # records of writes with an Idempotency-Key
    retry: int                  # records of writes without one, kept for their commit's retry


class RecordTable:
    """Operation records of one kind in the order they were made, kept for a retention, at most a limit."""

    def __init__(self, kind, retention, limit):
        self.kind, self._retention, self._limit = kind, retention, limit
        self._records = collections.OrderedDict()     # operation id -> {"id", "request", "result", "at", ...}

    def __len__(self):
        return len(self._records)

    def get(self, op_id, now):
        record = self._records.get(op_id)
        return record if record is not None and record["at"] >= now - self._retention else None

    def require_room(self, count, now):
        self._forget_expired(now)
        if len(self._records) + count > self._limit:
            oldest = next(iter(self._records.values()))
            raise RecordsFull(self.kind, max(1.0, oldest["at"] + self._retention - now))

    def add(self, record):
        self._records[record["id"]] = record

    def values(self):
        return self._records.values()

    def _forget_expired(self, now):
        """Made in time order, so only the oldest need a look."""
        while self._records and next(iter(self._records.values()))["at"] < now - self._retention:
            self._records.popitem(last=False)


class OperationRecords:
    """Each recorded operation's first result, so a retried request applies nothing twice.

    A client's Idempotency-Key record lives its whole retention. A write without a key is recorded only so that
    its commit may be sent again safely, for a short retention. Neither is dropped before its time: when a table
    is full, a write that needs room in it is refused and applies nothing.
    """

    def __init__(self, settings, wall_clock):
        self._wall_clock = wall_clock
        self._keyed = RecordTable("idempotency", settings.operation_retention, settings.operation_limit)
        self._retry = RecordTable("commit retry", settings.retry_record_retention, settings.retry_record_limit)

    def get(self, op_id):
        now = self._wall_clock()
        return self._keyed.get(op_id, now) or self._retry.get(op_id, now)

    def require_room(self, operations):
        now = self._wall_clock()
        keyed = sum(1 for op in operations if op.get("keyed", True))
        for table, count in ((self._keyed, keyed), (self._retry, len(operations) - keyed)):
            if count:
                table.require_room(count, now)

    def stamp(self, operations):
        """The operations as the journal records them: with the time they were made."""
        at = int(self._wall_clock())
        return [{"id": op["id"], "request": op["request"], "result": op["result"], "at": at,
                 **({} if op.get("keyed", True) else {"keyed": False})} for op in operations]

    def add(self, record):
        (self._keyed if record.get("keyed", True) else self._retry).add(record)

    def counts(self):
        return RecordCounts(len(self._keyed), len(self._retry))

    def copy(self):
        return list(self._keyed.values()) + list(self._retry.values())

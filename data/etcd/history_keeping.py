"""The etcd tier's history beyond the commit: where an entry is put and how long it stays, the cap on those etcd
holds (backlog.py), the relay that moves them out to the statement store (relay.py), and the older entries a
statement page reads there.

etcd holds each account's newest entries and the statement store the older ones: a page reads etcd first, then
the statement store below the oldest entry etcd gave. Every entry etcd no longer held was kept in the statement
store before it was deleted from etcd, so a page has no gap and no entry twice, also while the relay moves them.
"""
import json
import os
import socket

from data.etcd.backlog import HistoryBacklog
from data.etcd.gateway import put
from data.etcd.relay import StatementRelay
from data.statements.postgres import StatementStore, StatementsUnavailable
from data.store import HistoryUnavailable, Stats

_STORED = ("kind", "cents", "balance", "counterparty", "operation", "key", "at")   # an entry's value in etcd


class HistoryKeeping:
    def __init__(self, gateway, keys, records, settings, wall_clock):
        self._keys, self._records = keys, records
        self._backlog = HistoryBacklog(gateway, keys, settings.history_backlog_limit)
        self._statements = self._relay = None
        if settings.statements_patroni:
            self._statements = StatementStore(settings.statements_patroni, settings.statements_tls,
                                              settings.etcd_prefix, settings.etcd_timeout * 2)
            self._relay = StatementRelay(gateway, keys, self._statements, f"{socket.gethostname()}:{os.getpid()}",
                                         wall_clock)
            self._relay.start()
        # Entries leave etcd with the relay; without one they stay for good, or expire after a retention.
        self._entries_expire = self._statements is None and settings.history_retention is not None

    def require_room(self, entries):
        """HistoryUnavailable if etcd may not hold entries more now."""
        self._backlog.require_room(entries)

    def put(self, entry):
        """The request that puts a numbered entry, in its commit's transaction."""
        value = json.dumps({key: entry[key] for key in _STORED}, separators=(",", ":"))
        lease = self._records.span_lease("history", entry["at"] // 1000) if self._entries_expire else None
        return put(self._keys.entry(entry["account"], entry["seq"]), value, lease)

    def older(self, account, newest, before, limit):
        """newest (the page's entries etcd held, newest first), followed by the statement store's below them."""
        bound = newest[-1]["seq"] if newest else before
        if len(newest) >= limit or self._statements is None or (bound is not None and bound <= 1):
            return newest
        try:
            return newest + self._statements.page(account, bound, limit - len(newest))
        except StatementsUnavailable as error:
            raise HistoryUnavailable(str(error)) from None

    def stats(self):
        backlog = self._backlog.count()
        if self._relay is None:
            return Stats(history_backlog=backlog)
        relay = self._relay.status()
        return Stats(history_backlog=backlog, relaying=True, relay=relay.relay, relay_alarm=relay.alarm,
                     relay_lag_seconds=relay.lag_seconds if backlog else 0.0)

    def close(self):
        """The relay hands over to another data server's."""
        if self._relay is not None:
            self._relay.close()
            self._statements.close()

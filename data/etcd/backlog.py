"""The cap on history entries etcd holds (DATA_HISTORY_BACKLOG_LIMIT): those waiting for the relay (relay.py), or,
without a statement store, all of them. Past it a commit is refused (HistoryUnavailable), nothing applied, so etcd
stays bounded however long the statement store is away.

As for the operation records (records.py): the entries are counted at most RECOUNT_AFTER_SECONDS ago, plus what
this process has written since; with several data servers the cap may be passed by what the others wrote in that
time. At the cap, commits are refused on that count too: counting up to the whole cap again for each refusal would
load etcd the most just when it is behind.
"""
import math
import threading
import time

from data.etcd.gateway import count, get
from data.etcd.records import RECOUNT_AFTER_SECONDS
from data.store import HistoryUnavailable


class HistoryBacklog:
    def __init__(self, gateway, keys, limit):
        self._etcd, self._keys, self.limit = gateway, keys, limit
        self._held, self._counted_at = 0, -math.inf
        self._mutex = threading.Lock()

    def require_room(self, entries):
        """Room for entries more, counted as held from now on; HistoryUnavailable if there is none."""
        with self._mutex:
            held = self._held if time.monotonic() - self._counted_at < RECOUNT_AFTER_SECONDS else None
        if held is None:
            counted_at, held = time.monotonic(), self.count()
            with self._mutex:
                self._held, self._counted_at = held, counted_at
        if held + entries > self.limit:
            raise HistoryUnavailable(f"etcd holds {held} history entries not yet in the statement store, its cap "
                                     f"(DATA_HISTORY_BACKLOG_LIMIT {self.limit}); nothing was applied, try again")
        with self._mutex:
            self._held += entries

    def count(self):
        """The entries etcd holds now."""
        answer = self._etcd.txn(success=[get(self._keys.all_entries(), prefix=True, count_only=True)], resend=True)
        return count(answer["responses"][0])

"""The data server's metrics: events counted as they happen, and the store's live state read at each scrape."""
from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from data.store import StoreError

FAST_BUCKETS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
LOCK_WAIT_SECONDS = Histogram("bank_data_lock_wait_seconds", "Seconds a lock or read request waited for its turn "
                              "on a held account", buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
FENCING_REFUSALS = Counter("bank_data_fencing_refusals_total", "Writes and releases refused because their lease "
                           "was gone or another's (409 not_lock_holder)")
COMMITS = Counter("bank_data_commits_total", "Commits applied")
COMMIT_WRITES = Histogram("bank_data_commit_writes", "Accounts one applied commit wrote",
                          buckets=(0, 1, 2, 4, 8, 16, 32, 64, 100))
JOURNAL_APPEND_SECONDS = Histogram("bank_data_journal_append_seconds", "Seconds to write one journal record",
                                   buckets=FAST_BUCKETS_SECONDS)
JOURNAL_FSYNC_SECONDS = Histogram("bank_data_journal_fsync_seconds", "Seconds one journal fsync took",
                                  buckets=FAST_BUCKETS_SECONDS)
COMPACTION_SECONDS = Histogram("bank_data_compaction_seconds", "Seconds a journal compaction took, in the "
                               "background", buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60))


class LiveState:
    """A collector of what the store holds now: leases, waiters, accounts, records, the last compaction's pauses."""

    def __init__(self, store):
        self._store = store

    def collect(self):
        try:
            counts, stats = self._store.counts(), self._store.stats()
        except StoreError:
            return      # a store that cannot answer has no live state to report
        for name, help_text in (("leases", "Live leases"), ("waiting", "Requests waiting for a held account"),
                                ("accounts", "Accounts"),
                                ("idempotency_records", "Idempotency-Key records held"),
                                ("retry_records", "Records of writes without a key, held for commit retries")):
            yield GaugeMetricFamily(f"bank_data_{name}", help_text, value=getattr(counts, name))
        if stats.history_backlog is not None:
            yield GaugeMetricFamily("bank_data_history_backlog_entries", "History entries etcd holds, waiting for "
                                    "the relay to the statement store", value=stats.history_backlog)
        if stats.relay_lag_seconds is not None:
            yield GaugeMetricFamily("bank_data_relay_lag_seconds", "How old the oldest entry of the relay's last "
                                    "batch was when it reached the statement store", value=stats.relay_lag_seconds)
        if stats.relaying:
            yield GaugeMetricFamily("bank_data_relay_alarm", "1 if this data server stopped relaying: an entry "
                                    "kept in the statement store differs", value=int(stats.relay_alarm is not None))
        if stats.compactions is None:
            return
        yield CounterMetricFamily("bank_data_compactions", "Journal compactions finished", value=stats.compactions)
        stall = GaugeMetricFamily("bank_data_compaction_stall_seconds", "How long the last compaction held writes "
                                  "back", labels=["phase"])
        stall.add_metric(["copy"], stats.compaction_copy_seconds)
        stall.add_metric(["switch"], stats.compaction_switch_seconds)
        yield stall

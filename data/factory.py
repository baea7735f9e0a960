"""The one place that picks the store DATA_STORE names: the HTTP layer knows only the seam (data/store.py)."""
import time

from data.embedded.history_file import HistoryFile
from data.embedded.journal import Journal, MemoryJournal, run_in_thread
from data.embedded.store import EmbeddedStore
from data.etcd.store import EtcdStore

__all__ = ["create_store", "run_in_thread"]


def create_store(settings, clock=time.monotonic, wall_clock=time.time, background=run_in_thread):
    """The store settings.store names; background runs a compaction job (a thread unless a test says otherwise)."""
    if settings.store == "etcd":
        return EtcdStore(settings, wall_clock)
    journal = Journal(settings.journal_path, settings.fsync, background) if settings.journal_path else MemoryJournal()
    # The history file sits beside the journal (in memory with it); an entry goes there once its record is on disk.
    history_file = HistoryFile(settings.journal_path and settings.journal_path + ".history", settings.history_retention,
                               lambda seq: journal.sync(seq, force=True), wall_clock)
    return EmbeddedStore(journal, history_file, settings, clock, wall_clock)

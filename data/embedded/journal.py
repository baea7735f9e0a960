"""The embedded store's journal: an append-only file of checked records, compacted in the background.

Format on disk: one record per line, `CCCCCCCC BODY\n`, where CCCCCCCC is the CRC-32 of BODY in 8 hex digits and
BODY is one compact JSON object. A record counts only once its newline is in the file; whatever follows the last
newline was never acknowledged and is dropped (and cut off) at the next start. BODY's "t" names its type:

  {"t": "fence", "upto": N}                       fencing tokens up to N are reserved: after a restart, only
                                                  later ones are handed out (data/embedded/fencing.py)
  {"t": "commit", "w": {account: cents, ...},     one commit, all or nothing: the balances it wrote ("w"), the
   "o": [operation record, ...],                  operations it recorded ("o") and the history entries it made
   "h": [history entry, ...]}                     ("h", data/history.py), each left out when none
  {"t": "accounts", "a": {account: cents, ...},   a part of a snapshot: up to SNAPSHOT_CHUNK_ITEMS balances, and the
   "s": {account: seq, ...}}                      last history entry's seq of those that have one
  {"t": "operations", "o": [operation record, ...]}  a part of a snapshot: operation records
  {"t": "holds", "k": [hold, ...]}                a part of a snapshot: holds, held and closed (data/holds.py)

A commit also has "k": the holds it placed or closed, each as it is after the commit.

An operation record is {"id", "request", "result", "at": Unix seconds when it was made} and "keyed": false for a
write without an Idempotency-Key (left out when keyed; data/embedded/records.py). A compaction writes a snapshot
(one fence, then accounts and operations records) to a new file, appends what was journaled meanwhile and renames it
over the journal: a snapshot at the head of a file stands for everything before it. A snapshot holds no history entries:
they live in the history file (data/embedded/history_file.py), which a compaction waits for first.
"""
import json
import logging
import os
import threading
import time
import zlib

from data.metrics import COMPACTION_SECONDS, JOURNAL_APPEND_SECONDS, JOURNAL_FSYNC_SECONDS
from data.store import StorageFailed, StoreError, WriteFailed

log = logging.getLogger("bank.data")

SNAPSHOT_CHUNK_ITEMS = 10_000   # accounts or operation records per snapshot record: no journal line grows with the bank
SNAPSHOT_RECORD_TYPES = ("fence", "accounts", "operations", "holds")
COMPACTION_SYNC_BYTES = 1 << 20    # how often a compaction flushes its snapshot as it writes it


class JournalCorrupt(Exception):
    """A record before the journal's last whole one does not check out: replaying past it would invent history."""


class _NotARecord(Exception):
    """A line that is not a whole record whose checksum checks out."""


def run_in_thread(job):
    threading.Thread(target=job, name="journal-compaction", daemon=True).start()


class Journal:
    """Append-only file of CRC-checked JSON lines; a record counts once its newline is in the file.

    Every acknowledged write is in it before the reply. Compaction writes a snapshot to a new file in the
    background while appends go on, then switches over atomically with the lines appended meanwhile.
    """

    def __init__(self, path, fsync_policy, background=run_in_thread):
        self.path, self.fsync_policy = path, fsync_policy
        self.snapshot_size = 0          # bytes of the snapshot at the journal's head: compaction waits for twice it
        self.compactions = 0
        self.last_switch_seconds = 0.0  # how long the last compaction's switch held appends back
        self._background = background
        self._size = 0
        self._written_seq = 0
        self._synced_seq = 0
        self._fd = None
        self._failure = None            # why the journal failed; once set, nothing is acknowledged
        self._lines_during_compaction = None   # lines appended while a snapshot is being written
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._closed = threading.Event()

    def replay(self):
        """Yield the records up to the last whole one; drop a torn tail, refuse a corrupt middle."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as journal_file:
            content = journal_file.read()
        # What follows the last newline was never a whole record, whichever byte a crash cut it at.
        lines = content.split(b"\n")[:-1]
        valid_length = snapshot_size = 0
        records = []
        for index, line in enumerate(lines):
            try:
                record = _decode_record(line)
            except _NotARecord:
                if any(_is_record(later) for later in lines[index + 1:]):
                    raise JournalCorrupt(
                        f"{self.path}: record {index + 1} is corrupt and later records follow it") from None
                break
            records.append(record)
            in_snapshot = snapshot_size == valid_length and record["t"] in SNAPSHOT_RECORD_TYPES
            valid_length += len(line) + 1
            if in_snapshot:
                snapshot_size = valid_length
        if valid_length < len(content):
            log.warning("journal %s: dropped a torn tail of %d bytes at byte %d",
                        self.path, len(content) - valid_length, valid_length)
        self._size, self.snapshot_size = valid_length, snapshot_size
        yield from records

    def open(self):
        _make_directories(os.path.dirname(os.path.abspath(self.path)))
        created = not os.path.exists(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.ftruncate(self._fd, self._size)
        os.fsync(self._fd)
        if created:
            _fsync_directory(self.path)
        if self.fsync_policy == "everysec":
            threading.Thread(target=self._sync_every_second, name="journal-fsync", daemon=True).start()

    def check(self):
        """Raise StorageFailed once the journal has failed."""
        if self._failure is not None:
            raise StorageFailed(self._failure)

    def append(self, record):
        """Write one record through to the OS; return its sequence number for sync()."""
        line = _encode_record(record)
        with self._append_lock:
            self.check()
            started = time.perf_counter()
            try:
                _write_all(self._fd, line)
            except OSError as error:
                self._take_back_partial_write(error)
            JOURNAL_APPEND_SECONDS.observe(time.perf_counter() - started)
            self._size += len(line)
            self._written_seq += 1
            if self._lines_during_compaction is not None:
                self._lines_during_compaction.append(line)
            return self._written_seq

    @property
    def last_seq(self):
        return self._written_seq

    def sync(self, seq, force=False):
        """Return once record seq is on disk (policy always, or force); one fsync covers every writer waiting."""
        self.check()
        # Already on disk: no need to queue behind an fsync under way for later records.
        if (self.fsync_policy != "always" and not force) or self._synced_seq >= seq:
            return
        with self._sync_lock:
            self.check()
            if self._synced_seq >= seq:
                return
            target = self._written_seq
            self._fsync()
            self._synced_seq = target

    def due_for_compaction(self, min_bytes):
        return self._lines_during_compaction is None and self._size > max(min_bytes, 2 * self.snapshot_size)

    def start_compaction(self, snapshot_records, prepare=lambda: None):
        """Write snapshot_records to a new journal in the background, then switch to it.

        Call it where no append can run at the same time, so that the snapshot (a copy of the state as of now)
        and the lines kept for the switch meet exactly. prepare runs in the background first; a StoreError from
        it puts the compaction off until a later write.
        """
        with self._append_lock:
            if self._lines_during_compaction is not None or self._failure is not None or self._fd is None:
                return
            self._lines_during_compaction = []
        self._background(lambda: self._compact(snapshot_records, prepare))

    def close(self):
        self._closed.set()
        with self._append_lock, self._sync_lock:
            if self._fd is not None:
                if self._failure is None:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def _compact(self, snapshot_records, prepare):
        started = time.perf_counter()
        temporary = self.path + ".compacting"
        fd = None
        try:
            prepare()
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            snapshot_size = synced_size = 0
            for record in snapshot_records:
                line = _encode_record(record)
                _write_all(fd, line)
                snapshot_size += len(line)
                # Flushed as it goes, so no single fsync floods the disk that the journal's own fsyncs wait on.
                if snapshot_size - synced_size >= COMPACTION_SYNC_BYTES:
                    os.fdatasync(fd)
                    synced_size = snapshot_size
            os.fsync(fd)
            if self._switch(fd, temporary, snapshot_size):
                fd = None
                self.compactions += 1
                COMPACTION_SECONDS.observe(time.perf_counter() - started)
                log.info("journal compacted to %d bytes in %.0f ms (appends held back %.1f ms)", snapshot_size,
                         (time.perf_counter() - started) * 1000, self.last_switch_seconds * 1000)
        except (OSError, StoreError):
            # The old journal is still whole and still in use: only compaction waits for the next chance.
            log.exception("journal compaction failed; will try again after a later write")
        finally:
            with self._append_lock:
                self._lines_during_compaction = None
            if fd is not None:
                os.close(fd)
                _remove_if_present(temporary)

    def _switch(self, fd, temporary, snapshot_size):
        """Append the lines written meanwhile to the new file and make it the journal; False if closed or failed."""
        with self._append_lock, self._sync_lock:
            switch_started = time.perf_counter()
            if self._fd is None or self._failure is not None:
                return False
            tail = b"".join(self._lines_during_compaction)
            _write_all(fd, tail)
            os.fsync(fd)
            os.replace(temporary, self.path)
            # From the rename on, the new file is the journal whatever happens next.
            os.close(self._fd)
            self._fd = fd
            self._size, self.snapshot_size = snapshot_size + len(tail), snapshot_size
            self._synced_seq = self._written_seq
            try:
                _fsync_directory(self.path)
            except OSError as error:
                self._failure = f"fsync of the directory of {self.path} failed: {error}"
                log.error("journal: %s; nothing is acknowledged until a restart", self._failure)
            self.last_switch_seconds = time.perf_counter() - switch_started
            return True

    def _fsync(self):
        started = time.perf_counter()
        try:
            os.fsync(self._fd)
            JOURNAL_FSYNC_SECONDS.observe(time.perf_counter() - started)
        except OSError as error:
            # After a failed fsync the kernel may have dropped the pages: what is on disk is unknown from now on.
            self._failure = f"fsync of {self.path} failed: {error}"
            log.error("journal: %s; nothing is acknowledged until a restart", self._failure)
            raise StorageFailed(self._failure) from error

    def _take_back_partial_write(self, error):
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as truncate_error:
            self._failure = f"write to {self.path} failed and could not be taken back: {truncate_error}"
            raise StorageFailed(self._failure) from error
        raise WriteFailed(f"write to {self.path} failed: {error}") from error

    def _sync_every_second(self):
        while not self._closed.wait(1.0):
            with self._sync_lock:
                if self._fd is None or self._failure is not None or self._synced_seq >= self._written_seq:
                    continue
                target = self._written_seq
                try:
                    self._fsync()
                except StorageFailed:
                    return
                self._synced_seq = target


class MemoryJournal:
    """The journal when DATA_JOURNAL is empty: nothing survives a restart."""

    last_seq = 0
    compactions = 0
    last_switch_seconds = 0.0

    def replay(self):
        return iter(())

    def open(self):
        pass

    def check(self):
        pass

    def append(self, record):
        return 0

    def sync(self, seq, force=False):
        pass

    def due_for_compaction(self, min_bytes):
        return False

    def close(self):
        pass


def _encode_record(record):
    body = json.dumps(record, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _decode_record(line):
    """The record of a journal line; _NotARecord if it is torn, corrupt or no record."""
    checksum, _, body = line.partition(b" ")
    if len(checksum) != 8 or not body:
        raise _NotARecord("no checksum and body")
    try:
        if int(checksum, 16) != zlib.crc32(body):
            raise _NotARecord("the checksum does not match")
        record = json.loads(body)
    except ValueError as error:
        raise _NotARecord(str(error)) from None
    if not isinstance(record, dict) or "t" not in record:
        raise _NotARecord("not a record object")
    return record


def _is_record(line):
    try:
        _decode_record(line)
    except _NotARecord:
        return False
    return True


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_directory(path):
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_directories(directory):
    """Create directory and its missing parents, each made durable in its parent."""
    if os.path.isdir(directory):
        return
    _make_directories(os.path.dirname(directory))
    os.mkdir(directory, 0o700)
    _fsync_directory(directory)


def _remove_if_present(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


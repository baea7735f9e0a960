"""The data server: every account's balance in memory, leased and fenced locks, and a durable journal.

Run it with exactly one gunicorn worker (threads for concurrency), so that the store is one.
"""
import collections
import json
import logging
import math
import os
import threading
import time
import zlib

from flask import Blueprint, current_app, jsonify, request

from shared.auth import bearer_auth, configure_tokens
from shared.errors import ApiError
from shared.money import format_cents
from shared.settings import load_data_settings
from shared.validation import is_account_id, is_opaque_key
from shared.web import amount_cents, create_base_app, json_object, valid_account_id

log = logging.getLogger("bank.data")

FENCE_BLOCK = 10_000        # fencing tokens reserved in the journal at a time, so a lock costs no fsync
MAX_TOKEN = 2 ** 63 - 1
MAX_WAIT_MS = 10_000        # longest a getLock or getAmount may wait for its turn on a held account
MAX_WRITES_PER_COMMIT = 100
MAX_OPERATIONS_PER_COMMIT = 100
MAX_OPERATION_ID = 200
MAX_OPERATION_REQUEST = 512
SNAPSHOT_CHUNK = 10_000     # accounts per snapshot record, so no journal line grows with the bank


class JournalCorrupt(Exception):
    """A record before the journal's last one does not check out: replaying past it would invent history."""


class JournalFailed(Exception):
    """The journal could not be written or synced; the write was not acknowledged."""


class LockHeld(Exception):
    def __init__(self, account, holder, remaining):
        super().__init__(f"account {account} is locked by {holder}")
        self.account, self.holder, self.remaining = account, holder, remaining


class NotLockHolder(Exception):
    """The caller's lease is gone, expired or was never its own."""


class UnknownAccount(Exception):
    pass


class OperationConflict(Exception):
    """Some of a commit's operation ids are recorded already, but not all of them as this same request."""


class Journal:
    """Append-only file of CRC-checked JSON lines; every acknowledged write is in it before the reply."""

    def __init__(self, path, fsync_policy):
        self.path, self.fsync_policy = path, fsync_policy
        self.records_since_snapshot = 0
        self._written_seq = 0
        self._synced_seq = 0
        self._size = 0
        self._fd = None
        self._failed = False
        self._sync_lock = threading.Lock()
        self._closed = threading.Event()

    def replay(self):
        """Yield the journal's records in order; drop a torn tail, refuse a corrupt middle."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as journal_file:
            content = journal_file.read()
        lines = content.split(b"\n")
        valid_length, records = 0, []
        for index, line in enumerate(lines):
            record = _decode_record(line)
            if record is None:
                rest = lines[index + 1:]
                if any(_decode_record(later) is not None for later in rest):
                    raise JournalCorrupt(f"{self.path}: record {index + 1} is corrupt and later records follow it")
                if line or any(rest):
                    log.warning("journal %s: dropped a torn last record (%d bytes) at byte %d",
                                self.path, len(content) - valid_length, valid_length)
                break
            records.append(record)
            valid_length += len(line) + 1
        self._size = valid_length
        self.records_since_snapshot = len(records)
        yield from records

    def open(self):
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.ftruncate(self._fd, self._size)
        os.fsync(self._fd)
        if self.fsync_policy == "everysec":
            threading.Thread(target=self._sync_every_second, name="journal-fsync", daemon=True).start()

    def append(self, record):
        """Write one record through to the OS; return its sequence number for sync()."""
        if self._failed:
            raise JournalFailed("the journal failed earlier; restart the data server")
        line = _encode_record(record)
        try:
            _write_all(self._fd, line)
        except OSError as error:
            self._fail_after_partial_write(error)
        self._size += len(line)
        self._written_seq += 1
        self.records_since_snapshot += 1
        return self._written_seq

    @property
    def last_seq(self):
        return self._written_seq

    def sync(self, seq):
        """Return once record seq is on disk (policy always); one fsync covers every writer waiting for it."""
        # Already on disk: no need to queue behind an fsync under way for later records.
        if self.fsync_policy != "always" or self._synced_seq >= seq:
            return
        with self._sync_lock:
            if self._synced_seq >= seq:
                return
            target = self._written_seq
            self._fsync()
            self._synced_seq = target

    def rewrite(self, records):
        """Replace the journal by records (a snapshot), atomically: a crash leaves the old or the new file."""
        temporary = self.path + ".compacting"
        with self._sync_lock:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            size = count = 0
            try:
                for record in records:
                    line = _encode_record(record)
                    _write_all(fd, line)
                    size += len(line)
                    count += 1
                os.fsync(fd)
            except OSError:
                os.close(fd)
                os.unlink(temporary)
                raise
            os.replace(temporary, self.path)
            _fsync_directory(self.path)
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            os.close(fd)
            self._size = size
            self.records_since_snapshot = count
            self._synced_seq = self._written_seq

    def close(self):
        self._closed.set()
        if self._fd is not None:
            with self._sync_lock:
                if not self._failed:
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def _fsync(self):
        try:
            os.fsync(self._fd)
        except OSError as error:
            # After a failed fsync the kernel may have dropped the pages: nothing later can be trusted.
            self._failed = True
            raise JournalFailed(f"fsync of {self.path} failed: {error}") from error

    def _fail_after_partial_write(self, error):
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            self._failed = True
        raise JournalFailed(f"write to {self.path} failed: {error}") from error

    def _sync_every_second(self):
        while not self._closed.wait(1.0):
            with self._sync_lock:
                if self._fd is not None and self._synced_seq < self._written_seq and not self._failed:
                    target = self._written_seq
                    try:
                        self._fsync()
                    except JournalFailed:
                        log.exception("journal fsync failed; writes are refused from now on")
                        return
                    self._synced_seq = target


class MemoryJournal:
    """The journal when DATA_JOURNAL is empty: nothing survives a restart."""

    records_since_snapshot = 0
    last_seq = 0

    def replay(self):
        return iter(())

    def open(self):
        pass

    def append(self, record):
        return 0

    def sync(self, seq):
        pass

    def rewrite(self, records):
        pass

    def close(self):
        pass


class Store:
    """Accounts, leases, recorded operations and the fencing counter, behind one mutex."""

    def __init__(self, journal, settings, clock=time.monotonic, wall_clock=time.time):
        self._journal = journal
        self._ttl = settings.lock_ttl
        self._operation_limit = settings.operation_limit
        self._operation_retention = settings.operation_retention
        self._compact_min_records = settings.compact_min_records
        self._clock = clock
        self._wall_clock = wall_clock                       # for retention, which must hold across restarts
        self._mutex = threading.Lock()
        self._turn_changed = threading.Condition(self._mutex)   # a lease was released or a waiter left
        self._max_waiters = settings.lock_waiters           # waiting requests hold server threads: keep some free
        self._waiters = 0
        self._queues = {}                                   # account id -> deque of waiting requests, oldest first
        self._accounts = {}                                 # account id -> cents
        self._leases = {}                                   # account id -> (business, token, expires_at)
        self._operations = collections.OrderedDict()        # operation id -> {"request", "result"}
        self._fence = 0                                     # last fencing token handed out
        self._fence_reserved = 0                            # tokens up to this are reserved in the journal
        self._sweep_leases_at = 10_000
        for record in journal.replay():
            self._apply_record(record)
        self._fence = self._fence_reserved
        journal.open()

    def lock(self, business, account, token=None, lookup=(), wait=0.0):
        """Grant or renew a lease; return (token, remaining seconds, cents or None, recorded operations).

        While someone else holds it, wait up to `wait` seconds for this request's turn, in arrival order.
        """
        with self._mutex:
            if token is not None:
                now = self._clock()
                self._require_holder(business, account, token, now)
            else:
                now = self._wait_turn(account, wait)
                token = self._next_token()
                self._sweep_expired_leases(now)
            self._leases[account] = (business, token, now + self._ttl)
            self._forget_old_operations()
            recorded = {}
            for op_id in lookup:
                record = self._operations.get(op_id)
                if record is not None:
                    recorded[op_id] = {"request": record["request"], "result": record["result"]}
            amount, seq = self._accounts.get(account), self._journal.last_seq
        # What this reply shows must be durable before anyone sees it, or a crash could take back a value seen.
        self._journal.sync(seq)
        return token, self._ttl, amount, recorded

    def unlock(self, business, account, token):
        with self._mutex:
            self._require_holder(business, account, token, self._clock())
            self._release(account)

    def read(self, business, account, token=None, wait=0.0):
        """The account's cents; the holder reads with its token, anyone else waits its turn as in lock()."""
        with self._mutex:
            if token is not None:
                self._require_holder(business, account, token, self._clock())
            else:
                self._wait_turn(account, wait)
            if account not in self._accounts:
                raise UnknownAccount(account)
            amount, seq = self._accounts[account], self._journal.last_seq
        self._journal.sync(seq)
        return amount

    def commit(self, business, writes, operations=(), unlock=False):
        """Apply writes {account: (cents, token)} all or nothing; return (replayed, recorded results).

        operations is a list of {"id", "request", "result"}: if every id is recorded already with the same
        request, nothing is applied and the first results come back; a partial or different match conflicts.
        """
        with self._mutex:
            first_results = self._recorded_results(operations)
            if first_results is None:
                seq = self._apply_commit(business, writes, operations, unlock)
            else:
                if unlock:
                    self._release_held(business, writes)
                seq = self._journal.last_seq
        self._journal.sync(seq)
        if first_results is None:
            return False, [op["result"] for op in operations]
        return True, first_results

    def _recorded_results(self, operations):
        """None if no operation id is recorded; the first results if all are, for the same requests."""
        self._forget_old_operations()
        recorded = [self._operations.get(op["id"]) for op in operations]
        if not any(recorded):
            return None
        if all(rec is not None and rec["request"] == op["request"] for rec, op in zip(recorded, operations)):
            return [rec["result"] for rec in recorded]
        raise OperationConflict("an operation id of this commit is recorded for another request")

    def _apply_commit(self, business, writes, operations, unlock):
        """Check every lease, journal the commit, apply it; return the journal sequence to sync."""
        now = self._clock()
        for account, (_, token) in writes.items():
            self._require_holder(business, account, token, now)
        new_amounts = {account: cents for account, (cents, _) in writes.items()}
        record = {"t": "commit", "w": new_amounts}
        if operations:
            at = int(self._wall_clock())
            record["o"] = [{"id": op["id"], "request": op["request"], "result": op["result"], "at": at}
                           for op in operations]
        seq = self._journal.append(record)
        self._apply_record(record)
        if unlock:
            for account in writes:
                self._release(account)
        self._compact_if_due()
        return seq

    def counts(self):
        """How many accounts, live leases and waiting requests there are now."""
        with self._mutex:
            now = self._clock()
            live = sum(1 for lease in self._leases.values() if lease[2] > now)
            return {"accounts": len(self._accounts), "leases": live, "waiting": self._waiters}

    def _wait_turn(self, account, wait):
        """Return the time once no live lease is on account and no earlier request waits for it.

        Waits up to `wait` seconds in arrival order, or raises LockHeld. Called with the mutex held.
        """
        now = self._clock()
        lease = self._live_lease(account, now)
        if lease is None and account not in self._queues:
            return now
        if wait <= 0 or self._waiters >= self._max_waiters:
            raise self._held(account, lease, now)
        queue = self._queues.setdefault(account, collections.deque())
        turn = object()
        queue.append(turn)
        self._waiters += 1
        deadline = now + wait
        try:
            while not (queue[0] is turn and lease is None):
                if now >= deadline:
                    raise self._held(account, lease, now)
                # Wake at the latest when the lease would expire: expiry notifies no one.
                self._turn_changed.wait(deadline - now if lease is None else min(deadline, lease[2]) - now)
                now = self._clock()
                lease = self._live_lease(account, now)
            return now
        finally:
            queue.remove(turn)
            if not queue:
                del self._queues[account]
            self._waiters -= 1
            self._turn_changed.notify_all()

    def _held(self, account, lease, now):
        if lease is None:
            return LockHeld(account, "earlier waiting requests", 0.01)
        return LockHeld(account, lease[0], lease[2] - now)

    def _release(self, account):
        del self._leases[account]
        self._turn_changed.notify_all()

    def _live_lease(self, account, now):
        lease = self._leases.get(account)
        return lease if lease is not None and lease[2] > now else None

    def _require_holder(self, business, account, token, now):
        lease = self._live_lease(account, now)
        if lease is None or lease[:2] != (business, token):
            raise NotLockHolder(f"no live lease on {account} with token {token} for {business}")

    def _release_held(self, business, writes):
        for account, (_, token) in writes.items():
            lease = self._leases.get(account)
            if lease is not None and lease[:2] == (business, token):
                self._release(account)

    def _next_token(self):
        self._fence += 1
        if self._fence > self._fence_reserved:
            reserved = self._fence + FENCE_BLOCK
            self._journal.sync(self._journal.append({"t": "fence", "upto": reserved}))
            self._fence_reserved = reserved
        return self._fence

    def _sweep_expired_leases(self, now):
        if len(self._leases) < self._sweep_leases_at:
            return
        for account in [a for a, lease in self._leases.items() if lease[2] <= now]:
            del self._leases[account]
        self._sweep_leases_at = max(10_000, 2 * len(self._leases))

    def _apply_record(self, record):
        kind = record["t"]
        if kind == "commit":
            self._accounts.update(record["w"])
            for op in record.get("o", ()):
                self._record_operation(op)
        elif kind == "accounts":
            self._accounts.update(record["a"])
        elif kind == "operations":
            for op in record["o"]:
                self._record_operation(op)
        elif kind == "fence":
            self._fence_reserved = max(self._fence_reserved, record["upto"])
        else:
            raise JournalCorrupt(f"unknown journal record type {kind!r}")

    def _record_operation(self, op):
        self._operations[op["id"]] = {"request": op["request"], "result": op["result"], "at": op["at"]}
        while len(self._operations) > self._operation_limit:
            self._operations.popitem(last=False)

    def _forget_old_operations(self):
        """Drop records past their retention; they are in time order, so only the oldest need a look."""
        oldest_kept = self._wall_clock() - self._operation_retention
        while self._operations and next(iter(self._operations.values()))["at"] < oldest_kept:
            self._operations.popitem(last=False)

    def _compact_if_due(self):
        if self._journal.records_since_snapshot > max(self._compact_min_records, 2 * len(self._accounts)):
            started = time.perf_counter()
            try:
                self._journal.rewrite(self._snapshot_records())
            except OSError:
                # The old journal is still whole; the write that got here is in it, so only compaction waits.
                log.exception("journal compaction failed; will try again after the next write")
                return
            log.info("journal compacted to %d accounts in %.0f ms", len(self._accounts),
                     (time.perf_counter() - started) * 1000)

    def _snapshot_records(self):
        yield {"t": "fence", "upto": self._fence_reserved}
        accounts = list(self._accounts.items())
        for start in range(0, len(accounts), SNAPSHOT_CHUNK):
            yield {"t": "accounts", "a": dict(accounts[start:start + SNAPSHOT_CHUNK])}
        operations = [{"id": op_id, **rec} for op_id, rec in self._operations.items()]
        for start in range(0, len(operations), SNAPSHOT_CHUNK):
            yield {"t": "operations", "o": operations[start:start + SNAPSHOT_CHUNK]}


def _encode_record(record):
    body = json.dumps(record, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def _decode_record(line):
    checksum, _, body = line.partition(b" ")
    if len(checksum) != 8 or not body:
        return None
    try:
        if int(checksum, 16) != zlib.crc32(body):
            return None
        record = json.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "t" in record else None


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


# ---- HTTP --------------------------------------------------------------------------------------------

api = Blueprint("data", __name__)
auth = bearer_auth()


@api.before_request
@auth.login_required
def require_business_token():
    """Every data route but /health needs a business's bearer token."""
    current_app.extensions["bank.requests"].add()


class RequestCounter:
    """Authenticated requests served, reported by /health, so a benchmark can count data calls per operation."""

    def __init__(self):
        self._count = 0
        self._mutex = threading.Lock()

    def add(self):
        with self._mutex:
            self._count += 1

    @property
    def count(self):
        return self._count


def _store():
    return current_app.extensions["bank.store"]


def _caller(business_id, account_id=None):
    """The authenticated business, which must be the one named in the path."""
    caller = auth.current_user()
    if business_id != caller:
        raise ApiError(403, "wrong_business", "the path's business id is not the one this token belongs to")
    if account_id is not None:
        valid_account_id(account_id)
    return caller


def _optional_body():
    return json_object() if request.content_length or request.mimetype else {}


def _token(value, required=True):
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKEN:
        raise ApiError(400, "invalid_token", "token must be the positive integer that getLock returned")
    return value


def _flag(body, name):
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(400, "invalid_request", f"{name} must be true or false")
    return value


def _operations(body):
    operations = body.get("operations", [])
    if not isinstance(operations, list) or len(operations) > MAX_OPERATIONS_PER_COMMIT:
        raise ApiError(400, "invalid_operations", f"operations must be a list of at most "
                                                  f"{MAX_OPERATIONS_PER_COMMIT} objects")
    seen = set()
    for op in operations:
        if not (isinstance(op, dict) and is_opaque_key(op.get("id"), MAX_OPERATION_ID)
                and isinstance(op.get("request"), str) and len(op["request"]) <= MAX_OPERATION_REQUEST
                and "result" in op):
            raise ApiError(400, "invalid_operations", "each operation needs an id (printable ASCII, at most "
                                                      f"{MAX_OPERATION_ID}), a request string and a result")
        if op["id"] in seen:
            raise ApiError(400, "invalid_operations", f"operation id {op['id']} appears twice")
        seen.add(op["id"])
    return operations


def _query_number(name):
    """A query parameter as an int if it is plain digits, else as sent, for the body's validators to judge."""
    text = request.args.get(name)
    return int(text) if text is not None and text.isascii() and text.isdigit() and len(text) <= 19 else text


def _wait_seconds(value):
    if value is None:
        return 0.0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_WAIT_MS:
        raise ApiError(400, "invalid_wait", f"wait_ms must be a whole number of milliseconds from 0 to {MAX_WAIT_MS}")
    return value / 1000


def _lookup_ids(body):
    ids = body.get("lookup", [])
    if not isinstance(ids, list) or len(ids) > MAX_OPERATIONS_PER_COMMIT or not all(
            is_opaque_key(op_id, MAX_OPERATION_ID) for op_id in ids):
        raise ApiError(400, "invalid_lookup", "lookup must be a list of operation ids")
    return ids


def _locked(error):
    retry_after = max(1, math.ceil(error.remaining))
    return ApiError(423, "locked", f"account {error.account} is locked by {error.holder}",
                    {"Retry-After": str(retry_after)}, holder=error.holder,
                    retry_after_ms=max(1, round(error.remaining * 1000)))


def _store_call(function, *args, **kwargs):
    """Run a store operation and turn its refusals into HTTP errors."""
    try:
        return function(*args, **kwargs)
    except LockHeld as error:
        raise _locked(error) from None
    except NotLockHolder as error:
        raise ApiError(409, "not_lock_holder", str(error)) from None
    except UnknownAccount as error:
        raise ApiError(404, "account_not_found", f"account {error} does not exist") from None
    except OperationConflict as error:
        raise ApiError(409, "operation_conflict", str(error)) from None
    except (JournalFailed, OSError) as error:
        log.error("journal: %s", error)
        raise ApiError(503, "storage_unavailable", "the write could not be made durable; nothing was applied",
                       {"Retry-After": "1"}) from None


def _amount_or_none(cents):
    return None if cents is None else format_cents(cents)


@api.post("/getLock/<business_id>/<account_id>")
def get_lock(business_id, account_id):
    business = _caller(business_id, account_id)
    body = _optional_body()
    token, ttl, cents, recorded = _store_call(
        _store().lock, business, account_id, _token(body.get("token"), required=False), _lookup_ids(body),
        _wait_seconds(body.get("wait_ms")))
    return jsonify(account=account_id, token=token, ttl=ttl, amount=_amount_or_none(cents), operations=recorded)


@api.post("/unLock/<business_id>/<account_id>")
def un_lock(business_id, account_id):
    business = _caller(business_id, account_id)
    token = _token(json_object().get("token"))
    _store_call(_store().unlock, business, account_id, token)
    return jsonify(account=account_id, unlocked=True)


@api.post("/setAmount/<business_id>/<account_id>")
def set_amount(business_id, account_id):
    business = _caller(business_id, account_id)
    body = json_object()
    writes = {account_id: (amount_cents(body.get("amount")), _token(body.get("token")))}
    unlock = _flag(body, "unlock")
    _store_call(_store().commit, business, writes, unlock=unlock)
    return jsonify(account=account_id, amount=format_cents(writes[account_id][0]), unlocked=unlock)


@api.get("/getAmount/<business_id>/<account_id>")
def get_amount(business_id, account_id):
    business = _caller(business_id, account_id)
    token = _token(_query_number("token"), required=False)
    wait = _wait_seconds(_query_number("wait_ms"))
    cents = _store_call(_store().read, business, account_id, token, wait)
    return jsonify(account=account_id, amount=format_cents(cents))


@api.post("/commit/<business_id>")
def commit(business_id):
    business = _caller(business_id)
    body = json_object()
    operations = _operations(body)
    items = body.get("writes")
    # Operations alone may be recorded (a refusal under an idempotency key); otherwise a commit writes something.
    fewest = 0 if operations else 1
    if not isinstance(items, list) or not fewest <= len(items) <= MAX_WRITES_PER_COMMIT:
        raise ApiError(400, "invalid_writes", f"writes must be a list of {fewest} to {MAX_WRITES_PER_COMMIT} objects")
    writes = {}
    for item in items:
        if not isinstance(item, dict) or not is_account_id(item.get("account")):
            raise ApiError(400, "invalid_writes", "each write needs an account id, an amount and a token")
        if item["account"] in writes:
            raise ApiError(400, "invalid_writes", f"account {item['account']} is written twice")
        writes[item["account"]] = (amount_cents(item.get("amount")), _token(item.get("token")))
    unlock = _flag(body, "unlock")
    replayed, results = _store_call(_store().commit, business, writes, operations, unlock)
    return jsonify(replayed=replayed, results=results,
                   amounts={account: format_cents(cents) for account, (cents, _) in writes.items()},
                   unlocked=unlock and not replayed)


def create_app(settings=None, clock=time.monotonic, wall_clock=time.time):
    settings = settings or load_data_settings()
    app = create_base_app(__name__, "data", settings.max_body_bytes, settings.log_level)
    configure_tokens(app, settings.tokens)
    journal = Journal(settings.journal_path, settings.fsync) if settings.journal_path else MemoryJournal()
    store = Store(journal, settings, clock, wall_clock)
    app.extensions["bank.store"] = store
    app.extensions["bank.journal"] = journal
    requests_served = app.extensions["bank.requests"] = RequestCounter()

    @app.get("/health")
    def health():
        return jsonify(status="ok", requests=requests_served.count, **store.counts())

    app.register_blueprint(api)
    return app

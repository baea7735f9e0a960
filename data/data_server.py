"""The data server's HTTP layer: the seed's routes over a store (data/store.py), and the app factory.

Run it with exactly one gunicorn worker (threads for concurrency): with the embedded store, that process is the
bank. With DATA_STORE=etcd the bank lives in the etcd cluster and any number of data servers may serve it.
"""
import logging
import math
import threading
import time
from typing import NamedTuple

from flask import Blueprint, current_app, jsonify, request

from data import history, holds, parsing
from data.dashboard import Activity, dashboard_blueprint
from data.factory import create_store, run_in_thread
from data.metrics import COMMIT_WRITES, COMMITS, FENCING_REFUSALS, LiveState
from data.store import (
    CallerGone,
    HistoryMismatch,
    HistoryUnavailable,
    HoldConflict,
    HoldsExceedBalance,
    HoldsFull,
    LockHeld,
    NotLockHolder,
    OperationConflict,
    OwnerConflict,
    RecordsFull,
    StorageFailed,
    StoreError,
    StoreFull,
    StoreUnavailable,
    UnknownAccount,
    UnknownHold,
    Write,
    WriteFailed,
)
from shared.auth import bearer_auth, configure_tokens
from shared.errors import ApiError, error_response
from shared.metrics import register_metrics_route
from shared.money import format_cents
from shared.settings import load_data_settings
from shared.web import amount_cents, create_base_app, json_object, valid_account_id

log = logging.getLogger("bank.data")


class Refusal(NamedTuple):
    """How the data server answers a store's refusal (Retry-After comes from the refusal's retry_after)."""
    status: int
    code: str
    message: str                # "{error}": the refusal's own words


STORE_REFUSALS = {
    LockHeld: Refusal(423, "locked", "{error}"),
    CallerGone: Refusal(503, "caller_gone", "{error}; nothing is held for it"),
    NotLockHolder: Refusal(409, "not_lock_holder", "{error}"),
    UnknownAccount: Refusal(404, "account_not_found", "{error}"),
    OperationConflict: Refusal(409, "operation_conflict", "{error}"),
    OwnerConflict: Refusal(409, "owner_conflict", "{error}; nothing was applied"),
    HistoryMismatch: Refusal(409, "history_mismatch", "{error}; nothing was applied"),
    UnknownHold: Refusal(404, "hold_not_found", "{error}"),
    HoldConflict: Refusal(409, "hold_conflict", "{error}; nothing was applied"),
    HoldsExceedBalance: Refusal(409, "holds_exceed_balance", "{error}; nothing was applied"),
    HoldsFull: Refusal(503, "holds_full", "the bank holds as many holds as it may; nothing was applied, try again "
                                          "later"),
    HistoryUnavailable: Refusal(503, "history_unavailable", "{error}"),
    RecordsFull: Refusal(503, "idempotency_store_full", "{error}; nothing was applied, try again later"),
    WriteFailed: Refusal(503, "storage_unavailable", "the write could not be journaled; nothing was applied"),
    StorageFailed: Refusal(503, "storage_failed", "the journal could not be made durable, so what is on disk is "
                                                  "unknown: this request's outcome is unknown and nothing is answered "
                                                  "until the data server is restarted"),
    StoreFull: Refusal(503, "store_full", "{error}; nothing was applied, and no write will be until an operator makes "
                                          "room (docs/data-tier.md: the etcd tier's size)"),
    StoreUnavailable: Refusal(503, "store_unavailable", "the store's cluster did not answer; a write sent to it may "
                                                        "or may not have been applied: retry with the same operation "
                                                        "ids"),
}

api = Blueprint("data", __name__)
auth = bearer_auth()


def store_refusal(error):
    """Every StoreError raised under any route, the dashboard's and /health included, as the JSON answer."""
    refusal = next(STORE_REFUSALS[kind] for kind in type(error).__mro__ if kind in STORE_REFUSALS)
    headers, details = {}, {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    if isinstance(error, LockHeld):
        details = {"account": error.account, "holder": error.holder,
                   "retry_after_ms": max(1, round(error.remaining * 1000))}
    elif isinstance(error, HoldConflict):
        details = {"hold": error.hold_id}
    elif isinstance(error, NotLockHolder):
        FENCING_REFUSALS.inc()
        current_app.extensions["bank.activity"].refused(error.business, error.account, error.token)
    elif isinstance(error, WriteFailed):
        log.error("journal: %s", error)
    elif isinstance(error, StoreUnavailable):
        log.warning("store: %s", error)
    return error_response(refusal.status, refusal.code, refusal.message.format(error=error), headers, **details)


@api.before_request
@auth.login_required
def require_business_token():
    """Every data route but /health needs a business's bearer token. The requests of operations are counted; the
    business servers' looks for due holds, a few a second whatever the load, are not."""
    if request.endpoint != "data.due_holds":
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


def _count_commit(business, writes, operations, entries=()):
    COMMITS.inc()
    COMMIT_WRITES.observe(writes)
    current_app.extensions["bank.activity"].committed(business, operations, entries)


def _amount_or_none(cents):
    return None if cents is None else format_cents(cents)


@api.post("/getLock/<business_id>/<account_id>")
def get_lock(business_id, account_id):
    business = _caller(business_id, account_id)
    body = parsing.optional_body()
    token, lookup = parsing.optional_token(body.get("token")), parsing.lookup_ids(body)
    wait = parsing.wait_seconds(body.get("wait_ms"))
    granted = _store().lock(business, account_id, token, lookup, wait)
    return jsonify(account=account_id, token=granted.token, ttl=granted.ttl, amount=_amount_or_none(granted.cents),
                   owner=granted.owner, holds=[holds.wire(hold) for hold in granted.holds],
                   operations=granted.recorded)


@api.post("/getLocks/<business_id>")
def get_locks(business_id):
    business = _caller(business_id)
    body = json_object()
    accounts, lookup = parsing.lock_accounts(body), parsing.lookup_ids(body)
    wait, call, answer_by = parsing.wait_seconds(body.get("wait_ms")), parsing.lock_call(body), parsing.answer_by()
    granted = _store().lock_all(business, accounts, lookup, wait, call, answer_by)
    return jsonify(locks=[{"account": grant.account, "token": grant.token, "amount": _amount_or_none(grant.cents),
                           "owner": grant.owner, "holds": [holds.wire(hold) for hold in grant.holds]}
                          for grant in granted.grants],
                   ttl=granted.ttl, operations=granted.recorded)


@api.post("/unLock/<business_id>/<account_id>")
def un_lock(business_id, account_id):
    business = _caller(business_id, account_id)
    _store().unlock(business, account_id, parsing.token(json_object().get("token")))
    return jsonify(account=account_id, unlocked=True)


@api.post("/setAmount/<business_id>/<account_id>")
def set_amount(business_id, account_id):
    business = _caller(business_id, account_id)
    body = json_object()
    write = Write(amount_cents(body.get("amount")), parsing.token(body.get("token")))
    unlock = parsing.flag(body, "unlock")
    outcome = _store().commit(business, {account_id: write}, unlock=unlock)
    _count_commit(business, 1, 1, outcome.entries)
    return jsonify(account=account_id, amount=format_cents(write.cents), unlocked=unlock)


@api.get("/getAmount/<business_id>/<account_id>")
def get_amount(business_id, account_id):
    business = _caller(business_id, account_id)
    token = parsing.query_number("token", parsing.optional_token)
    wait = parsing.query_number("wait_ms", parsing.wait_seconds)
    seen = _store().read(business, account_id, token, wait)
    return jsonify(account=account_id, amount=format_cents(seen.cents), owner=seen.owner,
                   holds=[holds.wire(hold) for hold in seen.holds])


@api.post("/commit/<business_id>")
def commit(business_id):
    business = _caller(business_id)
    body = json_object()
    operations, release = parsing.operations(body), parsing.releases(body)
    # Operations alone may be recorded (a refusal under an idempotency key), or leases alone given back.
    writes = parsing.writes(body, release, fewest=0 if operations or release else 1)
    entries, placed_or_closed = parsing.entries(body, writes), parsing.commit_holds(body, writes)
    unlock = parsing.flag(body, "unlock")
    outcome = _store().commit(business, writes, operations, unlock, release, entries, placed_or_closed)
    if not outcome.replayed:
        _count_commit(business, len(writes), max(len(operations), 1), outcome.entries)
    return jsonify(replayed=outcome.replayed, results=outcome.results,
                   amounts={account: format_cents(write.cents) for account, write in writes.items()},
                   unlocked=unlock and not outcome.replayed)


@api.get("/getHistory/<business_id>/<account_id>")
def get_history(business_id, account_id):
    _caller(business_id, account_id)
    before = parsing.query_number("before", parsing.history_before)
    limit = parsing.query_number("limit", parsing.history_limit)
    owner = parsing.owner(request.args.get("owner"), required=False)
    page = _store().history(account_id, before, limit, owner)
    return jsonify(account=account_id, owner=page.owner, entries=[history.wire(entry) for entry in page.entries],
                   next_before=page.next_before)


@api.get("/getAccounts/<business_id>/<owner>")
def get_accounts(business_id, owner):
    _caller(business_id)
    parsing.owner(owner)
    after = parsing.accounts_after(request.args.get("after"))
    limit = parsing.query_number("limit", parsing.history_limit)
    page = _store().accounts(owner, after, limit)
    return jsonify(owner=owner, accounts=[{"account": account, "amount": format_cents(cents)}
                                          for account, cents in page.accounts], next_after=page.next_after)


@api.get("/getHold/<business_id>/<hold_id>")
def get_hold(business_id, hold_id):
    _caller(business_id)
    return jsonify(holds.wire(_store().hold(parsing.hold_id(hold_id))))


@api.get("/dueHolds/<business_id>")
def due_holds(business_id):
    """The held holds past their expiry by this data server's clock: the business servers' expiry asks it."""
    _caller(business_id)
    limit = parsing.query_number("limit", parsing.due_limit)
    now_ms = int(current_app.extensions["bank.wall_clock"]() * 1000)
    due = _store().due_holds(now_ms, limit)
    return jsonify(now_ms=now_ms, holds=[{"id": hold.id, "origin": hold.origin, "expires_at_ms": hold.expires_at}
                                         for hold in due])


def create_app(settings=None, clock=time.monotonic, wall_clock=time.time, background=run_in_thread):
    """The data server's app, on the store its settings name."""
    settings = settings or load_data_settings()
    app = create_base_app(__name__, "data", settings.max_body_bytes, settings.log_level,
                          settings.log_summary_seconds)
    configure_tokens(app, settings.tokens)
    store = app.extensions["bank.store"] = create_store(settings, clock, wall_clock, background)
    app.extensions["bank.wall_clock"] = wall_clock
    app.register_error_handler(StoreError, store_refusal)
    operator = register_metrics_route(app, settings.operator_tokens, [LiveState(store)])
    app.extensions["bank.activity"] = Activity()
    app.register_blueprint(dashboard_blueprint(operator))
    requests_served = app.extensions["bank.requests"] = RequestCounter()

    @app.get("/health")
    def health():
        stats = store.stats()
        upkeep = {} if stats.compactions is None else {
            "compactions": stats.compactions,
            "compaction_copy_ms": round(stats.compaction_copy_seconds * 1000, 1),
            "compaction_switch_ms": round(stats.compaction_switch_seconds * 1000, 1)}
        if stats.history_backlog is not None:
            upkeep["history_backlog"] = stats.history_backlog
        if stats.relaying:
            upkeep |= {"relay": stats.relay, "relay_alarm": stats.relay_alarm, "relay_lag_ms": None
                       if stats.relay_lag_seconds is None else round(stats.relay_lag_seconds * 1000)}
        return jsonify(status="ok", requests=requests_served.count, **store.counts()._asdict(), **upkeep)

    app.register_blueprint(api)
    return app

"""Presentation: the bank's HTTP API. Parses and checks requests, calls BankService, maps results to HTTP."""

from flask import Blueprint, current_app, g, has_request_context, jsonify, request

from business import bootstrap
from business.application.bank_service import MAX_LISTED_ACCOUNTS, MAX_STATEMENT_ENTRIES, Caller
from business.application.errors import (
    AccountExists,
    AccountNotFound,
    AccountOwned,
    BalanceLimitExceeded,
    BankError,
    ClientNotFound,
    Forbidden,
    HoldClosed,
    HoldExceeded,
    HoldNotFound,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidRequest,
    ServiceUnavailable,
    TooManyHolds,
)
from business.infra.metrics import UNAVAILABLE
from shared.auth import bearer_auth, configure_tokens
from shared.errors import ApiError, error_response
from shared.metrics import register_metrics_route
from shared.money import format_cents
from shared.settings import load_business_settings
from shared.timestamps import rfc3339
from shared.validation import is_account_id, is_hold_id, is_opaque_key
from shared.web import amount_cents, create_base_app, valid_account_id

IDEMPOTENCY_HEADER = "Idempotency-Key"
STATUS_OF = {InvalidRequest: 400, Forbidden: 403, AccountNotFound: 404, ClientNotFound: 404, AccountExists: 409,
             AccountOwned: 409, InsufficientFunds: 422, BalanceLimitExceeded: 422, IdempotencyConflict: 422,
             ServiceUnavailable: 503, HoldNotFound: 404, HoldClosed: 409, TooManyHolds: 422, HoldExceeded: 422}

bank = Blueprint("bank", __name__)
auth = bearer_auth()


@bank.before_request
@auth.login_required
def require_client_token():
    """Every bank route but /health needs a client's (or an operator's) bearer token, and takes everything from its
    path and query."""
    if request.content_length:
        raise ApiError(400, "unexpected_body", "these routes take no body: the account and amount are in the path")


@bank.errorhandler(BankError)
def bank_error(error):
    headers = None
    if isinstance(error, ServiceUnavailable):
        headers = {"Retry-After": str(error.retry_after)}
        UNAVAILABLE.labels(error.code).inc()
    return error_response(STATUS_OF.get(type(error), 500), error.code, error.message, headers)


def _service():
    return current_app.extensions["bank.service"]


def _idempotency_key():
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not is_opaque_key(key):
        raise ApiError(400, "invalid_idempotency_key",
                       f"{IDEMPOTENCY_HEADER} must be 1 to 128 printable ASCII characters without spaces")
    return key


def _reply(receipt, body):
    response = jsonify(body)
    if receipt.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def _caller():
    return auth.current_user()


def _shown(fields):
    """fields as answered: a balance the caller may not see (None) is left out."""
    return {name: format_cents(value) if isinstance(value, int) else value for name, value in fields.items()
            if value is not None}


def _movement(receipt):
    return _reply(receipt, _shown({"account": receipt.account, "amount": receipt.amount_cents,
                                   "balance": receipt.balance_cents}))


@bank.post("/deposit/<account_id>/<amount>")
def deposit(account_id, amount):
    account, cents = valid_account_id(account_id), amount_cents(amount)
    return _movement(_service().deposit(account, cents, _caller(), _idempotency_key()))


@bank.post("/withdrawal/<account_id>/<amount>")
def withdrawal(account_id, amount):
    account, cents = valid_account_id(account_id), amount_cents(amount)
    return _movement(_service().withdraw(account, cents, _caller(), _idempotency_key()))


@bank.get("/balance/<account_id>")
def balance(account_id):
    receipt = _service().balance(valid_account_id(account_id), _caller())
    return _reply(receipt, {"account": receipt.account, "balance": format_cents(receipt.balance_cents),
                            "available": format_cents(receipt.available_cents)})


@bank.post("/transfer/<origin_account_id>/<target_account_id>/<amount>")
def transfer(origin_account_id, target_account_id, amount):
    origin, target = valid_account_id(origin_account_id), valid_account_id(target_account_id)
    cents = amount_cents(amount)
    receipt = _service().transfer(origin, target, cents, _caller(), _idempotency_key())
    return _reply(receipt, _shown({"origin": receipt.account, "target": receipt.target, "amount": receipt.amount_cents,
                                   "origin_balance": receipt.balance_cents,
                                   "target_balance": receipt.target_balance_cents}))


def _account(receipt):
    """An account as the /accounts routes answer it (a read's also with what is available)."""
    return {"account": receipt.account, "owner": receipt.owner, "balance": format_cents(receipt.balance_cents),
            **_shown({"available": receipt.available_cents})}


@bank.post("/accounts/<account_id>")
def open_account(account_id):
    receipt = _service().open(valid_account_id(account_id), _caller(), _idempotency_key())
    response = _reply(receipt, _account(receipt))
    response.status_code = 201
    return response


@bank.post("/accounts/<account_id>/owner/<client>")
def give_account(account_id, client):
    account = valid_account_id(account_id)
    if not is_account_id(client):
        raise ApiError(400, "invalid_client", "the client must be a client's name: 1 to 64 of A-Z a-z 0-9 _ -")
    receipt = _service().give(account, client, _caller(), _idempotency_key())
    return _reply(receipt, _account(receipt))


@bank.get("/accounts/<account_id>")
def account_details(account_id):
    return jsonify(_account(_service().balance(valid_account_id(account_id), _caller())))


@bank.get("/accounts")
def own_accounts():
    limit, cursor = _page_query(MAX_LISTED_ACCOUNTS)
    listed = _service().accounts(_caller(), limit, cursor)
    return jsonify(accounts=[{"account": account, "balance": format_cents(cents)}
                             for account, cents in listed.accounts], next_cursor=listed.next_cursor)


def _page_query(most):
    """The query's limit (None if absent) and cursor, each checked for its form; the service checks their values."""
    limit_text, cursor = request.args.get("limit"), request.args.get("cursor")
    if limit_text is not None and not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 3):
        raise ApiError(400, "invalid_limit", f"limit must be a whole number from 1 to {most}")
    if cursor is not None and not is_opaque_key(cursor):
        raise ApiError(400, "invalid_cursor", "cursor must be a next_cursor the bank gave")
    return None if limit_text is None else int(limit_text), cursor


@bank.get("/history/<account_id>")
def history(account_id):
    account = valid_account_id(account_id)
    limit, cursor = _page_query(MAX_STATEMENT_ENTRIES)
    statement = _service().statement(account, _caller(), limit, cursor)
    return jsonify(account=statement.account, entries=[{
        "seq": entry.seq, "kind": entry.kind, "amount": format_cents(entry.amount_cents),
        "balance": format_cents(entry.balance_cents), "counterparty": entry.counterparty,
        "operation": entry.operation, "idempotency_key": entry.idempotency_key, "at": entry.at}
        for entry in statement.entries], next_cursor=statement.next_cursor)


def _hold(hold):
    """A hold as the bank answers it."""
    shown = {"id": hold.id, "origin": hold.origin, "target": hold.target, "amount": format_cents(hold.amount_cents),
             "state": hold.state, "expires_at": rfc3339(hold.expires_at_ms),
             "closed_at": None if hold.closed_at_ms is None else rfc3339(hold.closed_at_ms)}
    if hold.state == "captured":
        shown["captured"] = format_cents(hold.captured_cents)
    return shown


def _hold_reply(receipt, status=200):
    response = _reply(receipt, {**_hold(receipt.hold), **_shown({
        "balance": receipt.balance_cents, "available": receipt.available_cents,
        "target_balance": receipt.target_balance_cents})})
    response.status_code = status
    return response


def _hold_id(hold_id):
    if not is_hold_id(hold_id):
        raise ApiError(400, "invalid_hold", "a hold id is 32 lower-case hex digits, as the bank gave it")
    return hold_id


def _expires_in():
    """The query's expires_in in seconds, None if absent; the service checks its range."""
    text = request.args.get("expires_in")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 10):
        raise ApiError(400, "invalid_expires_in", "expires_in must be a whole number of seconds")
    return int(text)


@bank.post("/holds/<origin_account_id>/<target_account_id>/<amount>")
def place_hold(origin_account_id, target_account_id, amount):
    origin, target = valid_account_id(origin_account_id), valid_account_id(target_account_id)
    cents, expires_in = amount_cents(amount), _expires_in()
    return _hold_reply(_service().place_hold(origin, target, cents, expires_in, _caller(), _idempotency_key()), 201)


@bank.post("/holds/<hold_id>/capture")
def capture_hold(hold_id):
    return _hold_reply(_service().capture(_hold_id(hold_id), None, _caller(), _idempotency_key()))


@bank.post("/holds/<hold_id>/capture/<amount>")
def capture_part_of_hold(hold_id, amount):
    hold, cents = _hold_id(hold_id), amount_cents(amount)
    return _hold_reply(_service().capture(hold, cents, _caller(), _idempotency_key()))


@bank.post("/holds/<hold_id>/release")
def release_hold(hold_id):
    return _hold_reply(_service().release(_hold_id(hold_id), _caller(), _idempotency_key()))


@bank.get("/holds/<hold_id>")
def hold_details(hold_id):
    return jsonify(_hold(_service().hold(_hold_id(hold_id), _caller())))


@bank.get("/accounts/<account_id>/holds")
def held_holds(account_id):
    account = valid_account_id(account_id)
    return jsonify(account=account, holds=[_hold(hold) for hold in _service().held_holds(account, _caller())])


def _current_request_id():
    return g.get("request_id") if has_request_context() else None


def create_app(settings=None):
    """The business app, on the data servers its settings name."""
    settings = settings or load_business_settings()
    app = create_base_app(__name__, f"business-{settings.business_id}", settings.max_body_bytes,
                          settings.log_level, settings.log_summary_seconds)
    configure_tokens(app, {**{token: Caller(name) for token, name in settings.client_tokens.items()},
                           **{token: Caller(name, operator=True) for token, name in settings.operator_tokens.items()}})
    register_metrics_route(app, settings.operator_tokens)
    # Without a batcher (a test's app; a server whose batcher socket path is too long) this process runs its own
    # expiry of holds, once gunicorn's worker is up (business/batcher_supervisor.py's post_worker_init).
    app.extensions["bank.service"], app.extensions["bank.hold_expiry"] = bootstrap.bank_service(
        settings, _current_request_id, bootstrap.batcher_socket())

    @app.get("/health")
    def health():
        return jsonify(status="ok", business=settings.business_id)

    app.register_blueprint(bank)
    return app

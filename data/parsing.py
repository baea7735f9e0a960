"""The data server's request parsing: each part of a request checked, and turned into what the store takes, before
the store is asked anything; a malformed part is a 400 ApiError whatever the accounts' state."""
import math
import time

from flask import request

from data import history, holds
from data.store import HistoryMismatch, Write
from shared.errors import ApiError
from shared.failover import ANSWER_BY_HEADER
from shared.money import InvalidAmount, parse_cents
from shared.validation import is_account_id, is_hold_id, is_opaque_key
from shared.web import amount_cents, json_object

MAX_TOKEN = 2 ** 63 - 1
MAX_WAIT_MS = 10_000        # longest a getLock or getAmount may wait for its turn on a held account
MAX_WRITES_PER_COMMIT = 100
MAX_OPERATIONS_PER_COMMIT = 100
MAX_OPERATION_ID_CHARS = 200
MAX_CALL_ID_CHARS = 64
MAX_OPERATION_REQUEST_CHARS = 512
# A capture changes two accounts and releases the rest; a batch may also expire its accounts' due holds.
MAX_ENTRIES_PER_COMMIT = 4 * MAX_OPERATIONS_PER_COMMIT
MAX_HOLDS_PER_COMMIT = 2 * MAX_OPERATIONS_PER_COMMIT
MAX_TIME_MS = 10 ** 15      # a Unix time in ms, some 30,000 years on
ENTRY_KINDS = history.CREDITS + history.DEBITS + history.RESERVATIONS


def optional_body():
    """The JSON object sent, or {} when no body came."""
    return json_object() if request.content_length or request.mimetype else {}


def token(value, required=True):
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKEN:
        raise ApiError(400, "invalid_token", "token must be the positive integer that getLock returned")
    return value


def optional_token(value):
    return token(value, required=False)


def flag(body, name):
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise ApiError(400, "invalid_request", f"{name} must be true or false")
    return value


def query_number(name, check):
    """A query parameter through check, the validator of the same field in a JSON body: plain digits as the number
    they are, anything else as sent (which check refuses)."""
    text = request.args.get(name)
    return check(int(text) if text is not None and text.isascii() and text.isdigit() and len(text) <= 19 else text)


def wait_seconds(value):
    if value is None:
        return 0.0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_WAIT_MS:
        raise ApiError(400, "invalid_wait", f"wait_ms must be a whole number of milliseconds from 0 to {MAX_WAIT_MS}")
    return value / 1000


def lock_call(body):
    """getLocks' call: the caller's id for the request, the same on every data server it goes to; None if none."""
    call = body.get("call")
    if call is not None and not is_opaque_key(call, MAX_CALL_ID_CHARS):
        raise ApiError(400, "invalid_call", f"call must be 1 to {MAX_CALL_ID_CHARS} printable ASCII characters")
    return call


def answer_by():
    """The X-Answer-By header (the caller's wall-clock deadline, epoch milliseconds) on this process's monotonic
    clock; math.inf without one. Clocks apart by a skew cost only availability: fencing keeps every write exact."""
    text = request.headers.get(ANSWER_BY_HEADER)
    if text is None:
        return math.inf
    if not (text.isascii() and text.isdigit() and len(text) <= 15):
        raise ApiError(400, "invalid_answer_by", f"{ANSWER_BY_HEADER} must be a time in milliseconds since the epoch")
    return time.monotonic() + int(text) / 1000 - time.time()


def lookup_ids(body):
    ids = body.get("lookup", [])
    if not isinstance(ids, list) or len(ids) > MAX_OPERATIONS_PER_COMMIT or not all(
            is_opaque_key(op_id, MAX_OPERATION_ID_CHARS) for op_id in ids):
        raise ApiError(400, "invalid_lookup", "lookup must be a list of operation ids")
    return ids


def lock_accounts(body):
    """getLocks' accounts, sorted: every caller takes a set in one order."""
    accounts = body.get("accounts")
    if not (isinstance(accounts, list) and 1 <= len(accounts) <= MAX_WRITES_PER_COMMIT
            and all(is_account_id(account) for account in accounts) and len(set(accounts)) == len(accounts)):
        raise ApiError(400, "invalid_accounts", f"accounts must be a list of 1 to {MAX_WRITES_PER_COMMIT} distinct "
                                                "account ids")
    return sorted(accounts)


def operations(body):
    items = body.get("operations", [])
    if not isinstance(items, list) or len(items) > MAX_OPERATIONS_PER_COMMIT:
        raise ApiError(400, "invalid_operations", f"operations must be a list of at most "
                                                  f"{MAX_OPERATIONS_PER_COMMIT} objects")
    seen = set()
    for op in items:
        if not (isinstance(op, dict) and is_opaque_key(op.get("id"), MAX_OPERATION_ID_CHARS)
                and isinstance(op.get("request"), str) and len(op["request"]) <= MAX_OPERATION_REQUEST_CHARS
                and "result" in op and isinstance(op.get("keyed", True), bool)):
            raise ApiError(400, "invalid_operations", "each operation needs an id (printable ASCII, at most "
                                                      f"{MAX_OPERATION_ID_CHARS}), a request string, a result and "
                                                      "optionally keyed (true or false)")
        if op["id"] in seen:
            raise ApiError(400, "invalid_operations", f"operation id {op['id']} appears twice")
        seen.add(op["id"])
    return items


def releases(body):
    """The commit's "release" list as {account: token}: leases given back without a write."""
    items = body.get("release", [])
    if not isinstance(items, list) or len(items) > MAX_WRITES_PER_COMMIT:
        raise ApiError(400, "invalid_release", f"release must be a list of at most {MAX_WRITES_PER_COMMIT} objects")
    release = {}
    for item in items:
        if not isinstance(item, dict) or not is_account_id(item.get("account")) or item["account"] in release:
            raise ApiError(400, "invalid_release", "each release needs a distinct account id and its token")
        release[item["account"]] = token(item.get("token"))
    return release


def writes(body, release, fewest):
    """The commit's writes as {account: Write}: fewest to MAX_WRITES_PER_COMMIT, none also released."""
    items = body.get("writes")
    if not isinstance(items, list) or not fewest <= len(items) <= MAX_WRITES_PER_COMMIT:
        raise ApiError(400, "invalid_writes", f"writes must be a list of {fewest} to {MAX_WRITES_PER_COMMIT} objects")
    parsed = {}
    for item in items:
        if not isinstance(item, dict) or not is_account_id(item.get("account")):
            raise ApiError(400, "invalid_writes", "each write needs an account id, an amount, a token and optionally "
                                                  "the account's owner")
        if item["account"] in parsed or item["account"] in release:
            raise ApiError(400, "invalid_writes", f"account {item['account']} is written or released twice")
        parsed[item["account"]] = Write(amount_cents(item.get("amount")), token(item.get("token")),
                                        owner(item.get("owner"), required=False))
    return parsed


def owner(value, required=True):
    """A client's name, as the business servers pass it: the owner of an account."""
    if value is None and not required:
        return None
    if not is_account_id(value):
        raise ApiError(400, "invalid_owner", "owner must be a client's name: 1 to 64 of A-Z a-z 0-9 _ -")
    return value


def accounts_after(value):
    if value is not None and not is_account_id(value):
        raise ApiError(400, "invalid_after", "after must be an account id (a page's next_after)")
    return value


def entries(body, writes):
    """The commit's "entries" as {account: [history entry]}: each of a written account, each account's in the order
    they were applied, adding up to the balance written."""
    items = body.get("entries", [])
    if not isinstance(items, list) or len(items) > MAX_ENTRIES_PER_COMMIT:
        raise ApiError(400, "invalid_entries", f"entries must be a list of at most {MAX_ENTRIES_PER_COMMIT} objects")
    by_account = {}
    for item in items:
        if not (isinstance(item, dict) and is_account_id(item.get("account")) and item["account"] in writes
                and item.get("kind") in ENTRY_KINDS
                and (item.get("counterparty") is None) == (item["kind"] not in history.WITH_COUNTERPARTY)
                and (item.get("counterparty") is None or is_account_id(item["counterparty"]))
                and is_opaque_key(item.get("operation"), MAX_OPERATION_ID_CHARS)
                and (item.get("key") is None or is_opaque_key(item["key"]))):
            raise ApiError(400, "invalid_entries", "each entry needs the account of one of the writes, a kind ("
                                                   f"{', '.join(ENTRY_KINDS)}), an amount, the balance after it, "
                                                   "an operation id, a counterparty for a transfer, a capture or "
                                                   "a hold (only) and "
                                                   "optionally the client's Idempotency-Key")
        entry = {"kind": item["kind"], "cents": amount_cents(item.get("amount")),
                 "balance": amount_cents(item.get("balance")), "counterparty": item.get("counterparty"),
                 "operation": item["operation"], "key": item.get("key")}
        if entry["cents"] == 0:
            raise ApiError(400, "invalid_entries", "an entry's amount must be more than 0.00")
        by_account.setdefault(item["account"], []).append(entry)
    for account, own in by_account.items():
        try:
            history.check_chain(account, own, writes[account].cents)
        except HistoryMismatch as mismatch:
            raise ApiError(400, "invalid_entries", str(mismatch)) from None
    return by_account


def history_before(value):
    if value is None:
        return None
    if not isinstance(value, int) or not 1 <= value <= MAX_TOKEN:
        raise ApiError(400, "invalid_before", "before must be the positive seq of an entry (a page's next_before)")
    return value


def history_limit(value):
    if value is None:
        return history.DEFAULT_PAGE_ENTRIES
    if not isinstance(value, int) or not 1 <= value <= history.MAX_PAGE_ENTRIES:
        raise ApiError(400, "invalid_limit", f"limit must be a whole number from 1 to {history.MAX_PAGE_ENTRIES}")
    return value


def commit_holds(body, writes):
    """The commit's "holds" as [hold] (data/holds.py): each whole, of distinct ids, its origin among the writes."""
    items = body.get("holds", [])
    if not isinstance(items, list) or len(items) > MAX_HOLDS_PER_COMMIT:
        raise ApiError(400, "invalid_holds", f"holds must be a list of at most {MAX_HOLDS_PER_COMMIT} objects")
    parsed = [_hold(item, writes) for item in items]
    if len({hold["id"] for hold in parsed}) != len(parsed):
        raise ApiError(400, "invalid_holds", "a hold appears twice")
    return parsed


def _hold(item, writes):
    invalid = ApiError(400, "invalid_holds", "each hold needs an id (32 hex digits), an origin among the writes, "
                                             "another account as target, an amount, expires_at_ms, a state ("
                                             f"{', '.join(holds.STATES)}), the amount captured, closed_at_ms (null "
                                             "while held) and the owners of its accounts")
    if not (isinstance(item, dict) and is_hold_id(item.get("id")) and is_account_id(item.get("origin"))
            and item["origin"] in writes
            and is_account_id(item.get("target")) and item["target"] != item["origin"]
            and item.get("state") in holds.STATES and _is_time(item.get("expires_at_ms"))
            and (item.get("closed_at_ms") is None) == (item["state"] == holds.HELD)
            and (item.get("closed_at_ms") is None or _is_time(item["closed_at_ms"]))
            and is_account_id(item.get("origin_owner"))
            and (item.get("target_owner") is None or is_account_id(item["target_owner"]))):
        raise invalid
    try:
        cents, captured = parse_cents(item.get("amount")), parse_cents(item.get("captured"))
    except InvalidAmount:
        raise invalid from None
    if not (0 < cents and 0 <= captured <= cents and (captured > 0) == (item["state"] == "captured")):
        raise invalid
    return {"id": item["id"], "origin": item["origin"], "target": item["target"], "cents": cents,
            "expires_at": item["expires_at_ms"], "state": item["state"], "captured": captured,
            "closed_at": item["closed_at_ms"], "origin_owner": item["origin_owner"],
            "target_owner": item.get("target_owner")}


def _is_time(value):
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < MAX_TIME_MS


def hold_id(value):
    if not is_hold_id(value):
        raise ApiError(400, "invalid_hold", "a hold id is 32 lower-case hex digits")
    return value


def due_limit(value):
    if value is None:
        return MAX_HOLDS_PER_COMMIT // 2
    if not isinstance(value, int) or not 1 <= value <= MAX_HOLDS_PER_COMMIT:
        raise ApiError(400, "invalid_limit", f"limit must be a whole number from 1 to {MAX_HOLDS_PER_COMMIT}")
    return value

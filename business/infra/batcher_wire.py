"""What a business worker and its server's batcher say to each other: one JSON line a message, each way.

A request is {"operation": [kind, account, cents, target, operation id, key, client, operator, new owner, hold,
expires in], "request_id"}; its answer is {"result", "replayed"} or {"error": the BankError's class, "code", "message",
"retry_after"}.
"""
import json
from typing import NamedTuple

from business.application.errors import (
    AccountExists,
    AccountNotFound,
    AccountOwned,
    BalanceLimitExceeded,
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
from business.application.operations import Operation, Outcome

SOCKET_ENV = "BUSINESS_BATCHER_SOCKET"     # the batcher's socket, set by the gunicorn master for its workers
MAX_LINE_BYTES = 64 * 1024      # an operation is a few hundred bytes; a longer line is not from a worker
_ERRORS = {error.__name__: error for error in (AccountExists, AccountNotFound, AccountOwned, BalanceLimitExceeded,
                                                IdempotencyConflict, InsufficientFunds, InvalidRequest, Forbidden,
                                                HoldNotFound, HoldClosed, TooManyHolds, HoldExceeded)}


class WireError(Exception):
    """A line that is not a message of this protocol."""


class WorkerRequest(NamedTuple):
    operation: Operation
    request_id: str | None      # the request the worker serves, for the data calls of the lock cycle


def request_line(operation, request_id):
    fields = [operation.kind, operation.account, operation.amount_cents, operation.target,
              operation.operation_id, operation.key, operation.client, operation.operator, operation.new_owner,
              operation.hold, operation.expires_in]
    return _line({"operation": fields, "request_id": request_id})


def parse_request(line):
    """The WorkerRequest of a request line; WireError for anything else."""
    message = _message(line)
    try:
        kind, account, cents, target, operation_id, key, client, operator, new_owner, hold, expires_in = \
            message["operation"]
        return WorkerRequest(Operation(kind, account, cents, target, operation_id, key, client, operator, new_owner,
                                       hold, expires_in), message.get("request_id"))
    except (KeyError, TypeError, ValueError):
        raise WireError("not an operation") from None


def answer_line(outcome):
    """The line of an Outcome, or of the BankError that refused the operation."""
    if isinstance(outcome, Outcome):
        return _line({"result": outcome.result, "replayed": outcome.replayed})
    return _line({"error": type(outcome).__name__, "code": outcome.code, "message": outcome.message,
                  "retry_after": getattr(outcome, "retry_after", None)})


def parse_answer(line):
    """The Outcome of an answer line, or the BankError it carries, to raise; WireError for anything else."""
    message = _message(line)
    if "result" in message:
        return Outcome(message["result"], bool(message.get("replayed")))
    name, code, text = message.get("error"), message.get("code"), message.get("message")
    if name == ServiceUnavailable.__name__:
        return ServiceUnavailable(code, text, message.get("retry_after") or 1)
    if name in _ERRORS:
        return _ERRORS[name](text, code)
    raise WireError(f"not an answer: {line[:200]!r}")


def _line(message):
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def _message(line):
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise WireError("not JSON") from None
    if not isinstance(message, dict):
        raise WireError("not a JSON object")
    return message

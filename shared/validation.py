"""Checks of identifiers that cross the wire between client, business and data servers."""
import hashlib
import re

_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
# Printable ASCII without spaces: safe to log and to echo back.
_OPAQUE_KEY = re.compile(r"[\x21-\x7e]+", re.ASCII)
_HOLD_ID = re.compile(r"[0-9a-f]{32}", re.ASCII)


def is_account_id(text):
    return isinstance(text, str) and _ACCOUNT_ID.fullmatch(text) is not None


def is_opaque_key(text, max_length=128):
    """An idempotency key, request id or operation id: 1 to max_length printable ASCII characters."""
    return isinstance(text, str) and len(text) <= max_length and _OPAQUE_KEY.fullmatch(text) is not None


def operation_reference(operation_id):
    """An operation's reference, 32 hex digits that name neither client nor key: what a client's statement shows
    for it, and the id of the hold it places."""
    return hashlib.sha256(operation_id.encode()).hexdigest()[:32]


def is_hold_id(text):
    """A hold's id (an operation_reference): 32 lower-case hex digits."""
    return isinstance(text, str) and _HOLD_ID.fullmatch(text) is not None

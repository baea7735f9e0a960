"""Money is integer cents inside and a decimal string with two places on the wire."""
import re

# ASCII digits only: str.isdigit and int() also accept full-width and other scripts' digits.
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,17})(\.[0-9]{1,2})?", re.ASCII)


class InvalidAmount(ValueError):
    """The text is not a non-negative decimal with at most two places."""


def parse_cents(text):
    """Return the integer cents of a decimal string such as "150.5"; raise InvalidAmount otherwise."""
    if not isinstance(text, str):
        raise InvalidAmount("an amount must be a decimal string such as \"150.00\"")
    match = _AMOUNT.fullmatch(text)
    if match is None:
        raise InvalidAmount(
            f"{_shorten(text)!r} is not an amount: use digits with at most two decimal places, such as \"150.00\"")
    units, fraction = match.group(1), (match.group(2) or ".")[1:]
    return int(units) * 100 + int(fraction.ljust(2, "0"))


def format_cents(cents):
    """Return the wire form of integer cents, e.g. 15050 -> "150.50"."""
    if not isinstance(cents, int) or isinstance(cents, bool):
        raise TypeError(f"cents must be an int, not {type(cents).__name__}")
    sign = "-" if cents < 0 else ""
    units, rest = divmod(abs(cents), 100)
    return f"{sign}{units}.{rest:02d}"


def _shorten(text, limit=40):
    return text if len(text) <= limit else text[:limit] + "…"


def parse_signed_cents(text):
    """Like parse_cents, but a leading "-" is allowed: for reading balances that must be checked, not trusted."""
    if isinstance(text, str) and text.startswith("-"):
        return -parse_cents(text[1:])
    return parse_cents(text)

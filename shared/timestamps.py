"""Times on the wire: RFC 3339 in UTC to the millisecond, of Unix milliseconds inside, and back."""
import datetime


def rfc3339(unix_ms):
    """e.g. 1700000000123 -> "2023-11-14T22:13:20.123Z"."""
    at = datetime.datetime.fromtimestamp(unix_ms / 1000, datetime.UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unix_ms(text):
    """The Unix milliseconds of a time as rfc3339 writes it."""
    return round(datetime.datetime.fromisoformat(text).timestamp() * 1000)

"""Gunicorn answers some requests itself, before Flask (URI too long, header too large): in JSON too."""
import json

from gunicorn import util


def write_json_error(sock, status_int, reason, mesg):
    body = json.dumps({"error": reason.lower().replace(" ", "_"), "message": str(mesg or reason)}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def answer_errors_in_json():
    """Make gunicorn's own error answers JSON {"error", "message"}, as every other non-2xx answer is."""
    util.write_error = write_json_error

"""What every Flask app of the system shares: JSON errors, body limit, request ids and the request log."""
import json
import time
import uuid
from pathlib import Path

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from shared.errors import ApiError, register_error_handlers
from shared.metrics import observe_request
from shared.money import InvalidAmount, parse_cents
from shared.request_log import RequestLog
from shared.validation import is_account_id, is_opaque_key

REQUEST_ID_HEADER = "X-Request-ID"


def create_base_app(import_name, server_name, max_body_bytes, log_level, log_summary_seconds):
    """A Flask app with the system's common parts; it serves its package's openapi.json at /openapi.json."""
    app = Flask(import_name)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.json.sort_keys = False
    register_error_handlers(app)
    request_log = RequestLog(server_name, log_level, log_summary_seconds)
    description = json.loads((Path(app.root_path) / "openapi.json").read_text())

    @app.get("/openapi.json")
    def openapi():
        return jsonify(description)

    @app.before_request
    def start_request():
        g.started = time.perf_counter()
        g.error_code = None
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = offered if is_opaque_key(offered) else uuid.uuid4().hex
        # Refuse by the declared length, also on routes that never read the body.
        if (request.content_length or 0) > max_body_bytes:
            raise RequestEntityTooLarge(f"the body is larger than {max_body_bytes} bytes")

    @app.after_request
    def log_request(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "-")
        elapsed_ms = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        observe_request(server_name, (request.endpoint or "unmatched").rpartition(".")[2], response.status_code,
                        elapsed_ms / 1000)
        if request.endpoint not in ("health", "openapi", "static", "metrics"):

            def fields():
                yield from (("server", server_name), ("rid", g.get("request_id", "-")),
                            ("op", (request.endpoint or request.method).rpartition(".")[2]))
                yield from ((name, _loggable(value)) for name, value in (request.view_args or {}).items())
                yield from (("status", response.status_code), ("result", g.get("error_code") or "ok"),
                            ("ms", f"{elapsed_ms:.1f}"))
            request_log.request(fields, response.status_code, elapsed_ms)
        return response

    return app


def json_object():
    """The request's JSON body, which must be an object; anything else is a 4xx ApiError."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "send a JSON body with Content-Type: application/json")
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # Deeply nested JSON ("[[[[...") exhausts the parser's stack: it is malformed input, not a failure.
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return body


def valid_account_id(text):
    """text if it is a well-formed account id; a 400 ApiError otherwise."""
    if not is_account_id(text):
        raise ApiError(400, "invalid_account", "an account id is 1 to 64 of A-Z a-z 0-9 _ -")
    return text


def amount_cents(text):
    """The integer cents of a decimal amount string; a 400 ApiError otherwise."""
    try:
        return parse_cents(text)
    except InvalidAmount as error:
        raise ApiError(400, "invalid_amount", str(error)) from None


def _loggable(value, limit=64):
    """A path value as one safe, short log token: client input may hold newlines or be 10,000 characters."""
    text = "".join(c if "!" <= c <= "~" else "?" for c in str(value))
    return text if len(text) <= limit else text[:limit] + "..."

"""Every non-2xx answer is JSON {"error": "<code>", "message": "<text>"}, whatever raised it."""
import logging

from flask import g, jsonify
from werkzeug.exceptions import HTTPException


class ApiError(Exception):
    """An answer other than 2xx that a view or service decided on."""

    def __init__(self, status, code, message, headers=None, **details):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.details = details


def error_response(status, code, message, headers=None, **details):
    g.error_code = code
    response = jsonify({"error": code, "message": message, **details})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def register_error_handlers(app):
    @app.errorhandler(ApiError)
    def api_error(error):
        return error_response(error.status, error.code, error.message, error.headers, **error.details)

    @app.errorhandler(HTTPException)
    def http_error(error):
        headers = {name: value for name, value in error.get_headers() if name.lower() in ("allow", "retry-after")}
        code = (error.name or "error").lower().replace(" ", "_").replace("-", "_")
        return error_response(error.code or 500, code, error.description or error.name, headers)

    @app.errorhandler(Exception)
    def unexpected_error(error):
        logging.getLogger(app.name).exception("unexpected error")
        return error_response(500, "internal_error", "the server failed; the request may be retried")

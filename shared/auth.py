"""Bearer-token authentication: tokens compared in constant time and never logged."""
import hmac
from typing import NamedTuple

from flask import current_app
from flask_httpauth import HTTPTokenAuth

from shared.errors import error_response

TOKENS_CONFIG_KEY = "BANK_BEARER_TOKENS"


class BearerToken(NamedTuple):
    secret: bytes
    owner: str


def bearer_auth(config_key=TOKENS_CONFIG_KEY):
    """An HTTPTokenAuth whose current_user() is the owner of the presented token.

    The app's config[config_key] holds the BearerTokens, set by its factory with configure_tokens.
    """
    auth = HTTPTokenAuth(scheme="Bearer", realm="bank")

    @auth.verify_token
    def verify_token(presented):
        presented_bytes = presented.encode("utf-8", "surrogateescape")
        owner_found = None
        # Compare against every token so that the time taken does not reveal which one matched.
        for token in current_app.config[config_key]:
            if hmac.compare_digest(token.secret, presented_bytes):
                owner_found = token.owner
        return owner_found

    @auth.error_handler
    def auth_error(status):
        if status == 401:
            return error_response(401, "unauthorized", "a valid bearer token is required",
                                  {"WWW-Authenticate": 'Bearer realm="bank"'})
        return error_response(status, "forbidden", "this token may not do that")

    return auth


def configure_tokens(app, tokens, config_key=TOKENS_CONFIG_KEY):
    app.config[config_key] = [BearerToken(token.encode(), owner) for token, owner in tokens.items()]

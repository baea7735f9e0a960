"""What the bank answers instead of a result. The presentation layer maps each to an HTTP status."""


class BankError(Exception):
    code = "bank_error"

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidRequest(BankError):
    code = "invalid_request"


class AccountNotFound(BankError):
    code = "account_not_found"


class AccountExists(BankError):
    code = "account_exists"


class AccountOwned(BankError):
    code = "account_owned"


class ClientNotFound(BankError):
    code = "client_not_found"


class Forbidden(BankError):
    """The caller's kind may not do this at all (an operator moves no money)."""
    code = "forbidden"


class InsufficientFunds(BankError):
    code = "insufficient_funds"


class BalanceLimitExceeded(BankError):
    code = "balance_limit"


class IdempotencyConflict(BankError):
    code = "idempotency_conflict"


class ServiceUnavailable(BankError):
    """Nothing was applied, or (data_unavailable after a sent commit) the outcome is unknown: retry with the key."""

    def __init__(self, code, message, retry_after=1):
        super().__init__(message, code)
        self.retry_after = retry_after

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


class HoldNotFound(BankError):
    """No such hold, or one the caller is no party to: the same words either way."""
    code = "hold_not_found"


class HoldClosed(BankError):
    """The hold is captured, released or expired already."""
    code = "hold_closed"


class TooManyHolds(BankError):
    code = "too_many_holds"


class HoldExceeded(BankError):
    """A capture of more than the hold sets aside."""
    code = "amount_exceeds_hold"

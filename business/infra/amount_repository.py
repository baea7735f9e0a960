"""Account amounts on the data server: reads, and atomic multi-account commits under held leases."""
import abc
from dataclasses import dataclass

from business.infra.errors import DataRefused, DataUnavailable
from business.infra.lock_repository import AccountLocked
from shared.money import format_cents, parse_cents


class AccountMissing(Exception):
    pass


class LeaseLost(Exception):
    """A lease of the commit expired or was taken over: nothing was applied."""


class OperationConflict(Exception):
    """An operation id of the commit is recorded for another request: nothing was applied."""


@dataclass(frozen=True)
class CommitResult:
    replayed: bool      # True: the data server had applied this very commit before (a retry); first results
    results: list


class AmountRepository(abc.ABC):
    @abc.abstractmethod
    def get(self, account, wait=0.0):
        """Return the account's cents; raise AccountMissing, or AccountLocked if still held after `wait` s."""

    @abc.abstractmethod
    def commit(self, writes, operations):
        """Write {account: (cents, lease)} all or nothing, record operations, release the leases.

        operations: [{"id", "request", "result"}]. Raise LeaseLost or OperationConflict, applying nothing.
        """


class HttpAmountRepository(AmountRepository):
    def __init__(self, data_client, commit_attempts=2):
        self._data = data_client
        self._prefix = data_client.business_id
        self._commit_attempts = commit_attempts

    def get(self, account, wait=0.0):
        status, payload = self._data.call("GET", f"/getAmount/{self._prefix}/{account}",
                                          params={"wait_ms": int(wait * 1000)}, server_wait=wait)
        if status == 404:
            raise AccountMissing(account)
        if status == 423:
            raise AccountLocked.from_answer(account, payload)
        return parse_cents(payload["amount"])

    def commit(self, writes, operations):
        body = {"writes": [{"account": account, "amount": format_cents(cents), "token": lease.token}
                           for account, (cents, lease) in writes.items()],
                "operations": operations, "unlock": True}
        for attempt in range(1, self._commit_attempts + 1):
            try:
                status, payload = self._data.call("POST", f"/commit/{self._prefix}", body)
                break
            except DataUnavailable:
                # Safe to send again only because the operation ids make the commit idempotent.
                if attempt == self._commit_attempts or not operations:
                    raise
        if status == 409 and payload.get("error") == "operation_conflict":
            raise OperationConflict(payload.get("message"))
        if status == 409:
            raise LeaseLost(payload.get("message"))
        if status != 200:
            raise DataRefused(status, payload)
        return CommitResult(payload["replayed"], payload["results"])

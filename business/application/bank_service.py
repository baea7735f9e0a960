"""The bank's use cases: deposit, withdrawal, balance and transfer, each through its account's queue."""
import uuid
from dataclasses import dataclass

from business.application.errors import InvalidRequest
from business.application.operations import Operation


@dataclass(frozen=True)
class Receipt:
    account: str
    balance_cents: int
    amount_cents: int | None = None
    target: str | None = None
    target_balance_cents: int | None = None
    replayed: bool = False      # the first result of an earlier request with the same Idempotency-Key


class BankService:
    def __init__(self, queue_service, max_amount_cents, new_operation_id=lambda: uuid.uuid4().hex):
        self._queues = queue_service
        self._max_amount = max_amount_cents
        self._new_operation_id = new_operation_id

    def deposit(self, account, amount_cents, client, idempotency_key=None):
        return self._move("deposit", account, amount_cents, client, idempotency_key)

    def withdraw(self, account, amount_cents, client, idempotency_key=None):
        return self._move("withdrawal", account, amount_cents, client, idempotency_key)

    def transfer(self, origin, target, amount_cents, client, idempotency_key=None):
        if origin == target:
            raise InvalidRequest("origin and target must be different accounts", code="same_account")
        return self._move("transfer", origin, amount_cents, client, idempotency_key, target)

    def balance(self, account):
        outcome = self._queues.submit(Operation("balance", account))
        return Receipt(account, outcome.result["balance"])

    def _move(self, kind, account, amount_cents, client, idempotency_key, target=None):
        if not 0 < amount_cents <= self._max_amount:
            raise InvalidRequest(f"the amount must be more than 0.00 and at most the maximum of "
                                 f"{self._max_amount // 100}.{self._max_amount % 100:02d}", code="invalid_amount")
        keyed = idempotency_key is not None
        operation_id = f"{client}:{idempotency_key}" if keyed else self._new_operation_id()
        outcome = self._queues.submit(Operation(kind, account, amount_cents, target, operation_id, keyed))
        return Receipt(account, outcome.result["balance"], amount_cents, target,
                       outcome.result.get("target_balance"), outcome.replayed)

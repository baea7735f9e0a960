"""Account amounts on the data server: reads, and atomic multi-account commits under held leases."""
from business.application.ports import AmountRepository, CommitResult, DataUnavailable
from shared.money import format_cents, parse_cents


class HttpAmountRepository(AmountRepository):
    def __init__(self, data_client, commit_attempts=2):
        self._data = data_client
        self._prefix = data_client.business_id
        self._commit_attempts = commit_attempts

    def get(self, account, wait=0.0):
        payload = self._data.call("GET", f"/getAmount/{self._prefix}/{account}",
                                  params={"wait_ms": int(wait * 1000)}, server_wait=wait)
        return parse_cents(payload["amount"])

    def commit(self, writes, operations, release=()):
        body = {"writes": [{"account": account, "amount": format_cents(cents), "token": lease.token}
                           for account, (cents, lease) in writes.items()],
                "operations": operations, "unlock": True,
                "release": [{"account": lease.account, "token": lease.token} for lease in release]}
        for attempt in range(1, self._commit_attempts + 1):
            try:
                payload = self._data.call("POST", f"/commit/{self._prefix}", body)
                break
            except DataUnavailable:
                # Safe to send again only because the operation ids make the commit idempotent.
                if attempt == self._commit_attempts or not operations:
                    raise
        return CommitResult(payload["replayed"], payload["results"])

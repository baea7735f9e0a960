"""Account amounts on the data server: reads, and atomic multi-account commits under held leases."""
import time

from business.application.ports import AccountBalance, AmountRepository, CommitResult, DataUnavailable
from business.infra.hold_repository import hold_of, wire_of
from shared.money import format_cents, parse_cents

# How long a commit whose outcome is unknown is sent again: past an etcd election (about 2 s), so that the leases
# it holds are given back by the commit itself rather than held until they expire.
COMMIT_RESEND_SECONDS = 3.0
FIRST_PAUSE_SECONDS, LONGEST_PAUSE_SECONDS = 0.05, 0.5


class HttpAmountRepository(AmountRepository):
    def __init__(self, data_client, resend_seconds=COMMIT_RESEND_SECONDS, clock=time.monotonic, sleep=time.sleep):
        self._data = data_client
        self._prefix = data_client.business_id
        self._resend_seconds, self._clock, self._sleep = resend_seconds, clock, sleep

    def get(self, account, wait=0.0):
        payload = self._data.call("GET", f"/getAmount/{self._prefix}/{account}",
                                  params={"wait_ms": int(wait * 1000)}, server_wait=wait)
        return AccountBalance(parse_cents(payload["amount"]), payload.get("owner"),
                              tuple(hold_of(hold) for hold in payload.get("holds", ())))

    def commit(self, writes, operations, release=(), entries=(), on_resend=lambda: None, holds=()):
        body = {"writes": [{"account": account, "amount": format_cents(write.cents), "token": write.lease.token,
                            **({} if write.owner is None else {"owner": write.owner})}
                           for account, write in writes.items()],
                "operations": operations, "unlock": True,
                "release": [{"account": lease.account, "token": lease.token} for lease in release],
                "entries": [{"account": entry["account"], "kind": entry["kind"], "amount": format_cents(entry["cents"]),
                             "balance": format_cents(entry["balance"]), "counterparty": entry["counterparty"],
                             "operation": entry["operation"], "key": entry["key"]} for entry in entries],
                "holds": [wire_of(hold) for hold in holds]}
        deadline, pause = self._clock() + self._resend_seconds, FIRST_PAUSE_SECONDS
        while True:
            try:
                payload = self._data.call("POST", f"/commit/{self._prefix}", body, resend=False)
                return CommitResult(payload["replayed"], payload["results"])
            except DataUnavailable:
                # Safe to send again (to the next data server) only because operation ids make it idempotent.
                if not operations or self._clock() + pause > deadline:
                    raise
            if pause == FIRST_PAUSE_SECONDS:
                on_resend()
            self._sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE_SECONDS)

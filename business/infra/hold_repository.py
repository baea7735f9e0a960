"""Holds on the data server: read by id, an account's held ones, the due ones; and the one wire form of a hold
both ways (the lock and amount repositories read and send holds in it)."""
from business.application.ports import DueHold, Hold, HoldRepository
from shared.money import format_cents, parse_cents


def hold_of(wire):
    """A Hold of the data server's JSON."""
    return Hold(wire["id"], wire["origin"], wire["target"], parse_cents(wire["amount"]), wire["expires_at_ms"],
                wire["state"], parse_cents(wire["captured"]), wire["closed_at_ms"], wire["origin_owner"],
                wire["target_owner"])


def wire_of(hold):
    """The data server's JSON of a Hold."""
    return {"id": hold.id, "origin": hold.origin, "target": hold.target, "amount": format_cents(hold.amount_cents),
            "expires_at_ms": hold.expires_at_ms, "state": hold.state, "captured": format_cents(hold.captured_cents),
            "closed_at_ms": hold.closed_at_ms, "origin_owner": hold.origin_owner, "target_owner": hold.target_owner}


READ_WAIT_SECONDS = 0.5      # how long the data server may hold a read of a leased account back


class HttpHoldRepository(HoldRepository):
    def __init__(self, data_client, amounts):
        """amounts: the AmountRepository an account's holds are read with."""
        self._data, self._amounts = data_client, amounts
        self._prefix = data_client.business_id

    def get(self, hold_id):
        return hold_of(self._data.call("GET", f"/getHold/{self._prefix}/{hold_id}"))

    def of_account(self, account):
        return self._amounts.get(account, READ_WAIT_SECONDS)

    def due(self, limit):
        payload = self._data.call("GET", f"/dueHolds/{self._prefix}", params={"limit": limit})
        return [DueHold(hold["id"], hold["origin"]) for hold in payload["holds"]]

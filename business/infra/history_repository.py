"""Accounts' history, read from the data server (what is committed; no lock)."""
from business.application.ports import HistoryEntry, HistoryPage, HistoryRepository
from shared.money import parse_cents, parse_signed_cents


class HttpHistoryRepository(HistoryRepository):
    def __init__(self, data_client):
        self._data = data_client
        self._prefix = data_client.business_id

    def page(self, account, before, limit, owner=None):
        params = {"limit": limit, **({} if before is None else {"before": before}),
                  **({} if owner is None else {"owner": owner})}
        payload = self._data.call("GET", f"/getHistory/{self._prefix}/{account}", params=params)
        return HistoryPage([HistoryEntry(entry["seq"], entry["kind"], parse_signed_cents(entry["amount"]),
                                         parse_cents(entry["balance"]), entry["counterparty"], entry["operation"],
                                         entry["idempotency_key"], entry["at"]) for entry in payload["entries"]],
                           payload["next_before"], payload.get("owner"))

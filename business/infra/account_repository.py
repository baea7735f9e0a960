"""Each client's accounts, listed by the data server."""
from business.application.ports import AccountRepository, AccountsPage
from shared.money import parse_cents


class HttpAccountRepository(AccountRepository):
    def __init__(self, data_client):
        self._data = data_client
        self._prefix = data_client.business_id

    def page(self, owner, after, limit):
        params = {"limit": limit} if after is None else {"limit": limit, "after": after}
        payload = self._data.call("GET", f"/getAccounts/{self._prefix}/{owner}", params=params)
        return AccountsPage([(listed["account"], parse_cents(listed["amount"])) for listed in payload["accounts"]],
                            payload["next_after"])

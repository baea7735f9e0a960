"""Whose account: every bank route × (the caller's own account, another client's, an unknown one) × (a client, an
operator), on both stores. Another's account answers a debit or a read exactly as an unknown one and nothing
changes; anyone pays in; an operator reads any account and moves no money."""
import pytest
import requests

from tests.helpers import CLIENT_TOKEN, DATA_TOKENS, OPERATOR_TOKEN, bearer

CALLERS = {"client": bearer(CLIENT_TOKEN), "operator": bearer(OPERATOR_TOKEN)}
OTHER = bearer("other-client-token")
# The tester's, the other client's, no one's: ids of one length, so that even Content-Length cannot tell them apart.
OWN, ANOTHERS, UNKNOWN = "spare", "theirs", "nobody"
ROUTES = {
    "deposit": ("POST", "/deposit/{}/1.00"),
    "withdrawal": ("POST", "/withdrawal/{}/1.00"),
    "transfer out of": ("POST", "/transfer/{}/mine/1.00"),
    "transfer into": ("POST", "/transfer/mine/{}/1.00"),
    "balance": ("GET", "/balance/{}"),
    "statement": ("GET", "/history/{}"),
    "account": ("GET", "/accounts/{}"),
    "open": ("POST", "/accounts/{}"),
    "give": ("POST", "/accounts/{}/owner/tester"),
}
# The status each route answers each caller on (its own account, another client's, an unknown one).
EXPECTED = {
    ("deposit", "client"): (200, 200, 200),
    ("withdrawal", "client"): (200, 404, 404),
    ("transfer out of", "client"): (200, 404, 404),
    ("transfer into", "client"): (200, 200, 404),
    ("balance", "client"): (200, 404, 404),
    ("statement", "client"): (200, 404, 404),
    ("account", "client"): (200, 404, 404),
    ("open", "client"): (409, 409, 201),
    ("give", "client"): (403, 403, 403),
    ("give", "operator"): (409, 409, 404),
    **{(route, "operator"): (403, 403, 403) for route in ("deposit", "withdrawal", "transfer out of",
                                                           "transfer into", "open")},
    **{(route, "operator"): (200, 200, 404) for route in ("balance", "statement", "account")},
}
# Headers that differ between any two answers.
PER_ANSWER = {"Date", "X-Request-ID"}


@pytest.fixture
def bank(make_business_app):
    bank = make_business_app().test_client()
    for account, owner in (("mine", CALLERS["client"]), (OWN, CALLERS["client"]), (ANOTHERS, OTHER)):
        assert bank.post(f"/deposit/{account}/10.00", headers=owner).status_code == 200
    return bank


def state(bank):
    """What an operator sees of every account: balance, owner and statement length (None: no such account)."""
    operator = CALLERS["operator"]
    seen = {}
    for account in ("mine", OWN, ANOTHERS, UNKNOWN):
        answer = bank.get(f"/accounts/{account}", headers=operator)
        statement = bank.get(f"/history/{account}", headers=operator)
        seen[account] = None if answer.status_code == 404 else (answer.json["balance"], answer.json["owner"],
                                                                 len(statement.json["entries"]))
    return seen


def comparable(answer, account):
    """The answer with the account's id in its words as {account}: the same for two ids told apart by nothing."""
    body = {name: value.replace(account, "{account}") for name, value in answer.json.items()}
    return answer.status_code, body, sorted((k, v) for k, v in answer.headers.items() if k not in PER_ANSWER)


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("route", ROUTES)
def test_every_route_on_an_own_another_clients_and_an_unknown_account(bank, route, caller):
    method, path = ROUTES[route]
    answers = {}
    for target, status in zip((OWN, ANOTHERS, UNKNOWN), EXPECTED[(route, caller)]):
        before = state(bank)
        answer = answers[target] = bank.open(path.format(target), method=method, headers=CALLERS[caller])
        assert answer.status_code == status, (target, answer.json)
        if status >= 400:
            assert answer.json["error"] and answer.json["message"]
            assert state(bank) == before, f"a refused {route} of {target} changed something"
    if EXPECTED[(route, caller)][1:] == (404, 404):
        # Another's account is not told apart from no account: the same status, body and headers.
        assert comparable(answers[ANOTHERS], ANOTHERS) == comparable(answers[UNKNOWN], UNKNOWN)


def test_a_payment_into_another_clients_account_is_applied_and_answered_without_its_balance(bank):
    client = CALLERS["client"]
    deposit = bank.post(f"/deposit/{ANOTHERS}/2.50", headers=client).json
    assert deposit == {"account": ANOTHERS, "amount": "2.50"}
    transfer = bank.post(f"/transfer/mine/{ANOTHERS}/1.50", headers=client).json
    assert transfer == {"origin": "mine", "target": ANOTHERS, "amount": "1.50", "origin_balance": "8.50"}
    assert bank.get(f"/balance/{ANOTHERS}", headers=OTHER).json["balance"] == "14.00"
    kinds = [entry["kind"] for entry in bank.get(f"/history/{ANOTHERS}", headers=OTHER).json["entries"]]
    assert kinds == ["transfer_in", "deposit", "deposit"]


def test_a_first_deposit_and_an_open_make_the_caller_the_owner_for_good(bank):
    client = CALLERS["client"]
    assert bank.post("/deposit/new/1.00", headers=OTHER).json["balance"] == "1.00"
    opened = bank.post("/accounts/empty", headers=client)
    assert (opened.status_code, opened.json) == (201, {"account": "empty", "owner": "tester", "balance": "0.00"})
    assert bank.get("/accounts/new", headers=CALLERS["operator"]).json == {"account": "new", "owner": "other",
                                                                          "balance": "1.00", "available": "1.00"}
    assert bank.get("/balance/new", headers=client).status_code == 404
    assert bank.get("/history/empty", headers=client).json["entries"] == []
    again = bank.post("/accounts/new", headers=client)
    assert (again.status_code, again.json["error"]) == (409, "account_exists")


def test_a_key_sent_with_a_debit_of_another_clients_account_records_what_an_unknown_accounts_would(bank):
    client = CALLERS["client"]
    for target in (ANOTHERS, UNKNOWN):
        key = {**client, "Idempotency-Key": f"try-{target}"}
        assert bank.post(f"/withdrawal/{target}/1.00", headers=key).status_code == 404
        assert bank.post(f"/withdrawal/{target}/1.00", headers=key).status_code == 404
        reused = bank.post("/withdrawal/mine/1.00", headers=key)
        assert (reused.status_code, reused.json["error"]) == (422, "idempotency_conflict")
    assert bank.get(f"/balance/{ANOTHERS}", headers=OTHER).json["balance"] == "10.00"


def test_a_client_lists_its_own_accounts_a_page_at_a_time_and_no_one_elses(bank):
    client = CALLERS["client"]
    for account in ("c1", "c2", "c3"):
        bank.post(f"/accounts/{account}", headers=client)
    first = bank.get("/accounts?limit=3", headers=client).json
    assert [a["account"] for a in first["accounts"]] == ["c1", "c2", "c3"] and first["next_cursor"]
    rest = bank.get(f"/accounts?limit=3&cursor={first['next_cursor']}", headers=client).json
    assert rest == {"accounts": [{"account": "mine", "balance": "10.00"}, {"account": OWN, "balance": "10.00"}],
                    "next_cursor": None}
    assert bank.get("/accounts", headers=OTHER).json == {"accounts": [{"account": ANOTHERS, "balance": "10.00"}],
                                                         "next_cursor": None}
    assert bank.get("/accounts?cursor=bm9wZQ", headers=client).json["error"] == "invalid_cursor"
    assert bank.get("/accounts", headers=CALLERS["operator"]).status_code == 403


def test_an_account_from_before_owners_is_no_clients_until_an_operator_gives_it_to_one_for_good(
        bank, live_data_url):
    # Written as every account was before owners: by the data API, naming none.
    with requests.Session() as data:
        data.headers.update(bearer(DATA_TOKENS["b1"]))
        token = data.post(f"{live_data_url}/getLock/b1/legacy", timeout=5).json()["token"]
        data.post(f"{live_data_url}/setAmount/b1/legacy", json={"amount": "50.00", "token": token, "unlock": True},
                  timeout=5)
    for client in (CALLERS["client"], OTHER):
        for method, path in (("POST", "/withdrawal/legacy/1.00"), ("POST", "/transfer/legacy/mine/1.00"),
                             ("GET", "/balance/legacy"), ("GET", "/history/legacy"), ("GET", "/accounts/legacy")):
            answer = bank.open(path, method=method, headers=client)
            assert (answer.status_code, answer.json["error"]) == (404, "account_not_found"), path
    assert bank.post("/deposit/legacy/1.00", headers=OTHER).json == {"account": "legacy", "amount": "1.00"}
    assert bank.get("/accounts/legacy", headers=CALLERS["operator"]).json == {"account": "legacy", "owner": None,
                                                                             "balance": "51.00", "available": "51.00"}
    assert bank.post("/accounts/legacy", headers=OTHER).json["error"] == "account_exists"
    operator = CALLERS["operator"]
    assert bank.post("/accounts/legacy/owner/nobody", headers=operator).json["error"] == "client_not_found"
    given = bank.post("/accounts/legacy/owner/tester", headers=operator)
    assert (given.status_code, given.json) == (200, {"account": "legacy", "owner": "tester", "balance": "51.00"})
    assert bank.post("/withdrawal/legacy/1.00", headers=CALLERS["client"]).json["balance"] == "50.00"
    assert bank.get("/balance/legacy", headers=OTHER).status_code == 404
    again = bank.post("/accounts/legacy/owner/other", headers=operator)
    assert (again.status_code, again.json["error"]) == (409, "account_owned")
    assert "legacy" in [a["account"] for a in bank.get("/accounts", headers=CALLERS["client"]).json["accounts"]]
    statement = bank.get("/history/legacy", headers=operator).json["entries"]
    assert [(e["kind"], e["amount"]) for e in statement] == [("withdrawal", "1.00"), ("deposit", "1.00"),
                                                             ("adjustment", "50.00")]


def test_every_token_of_one_client_name_is_that_client(make_business_app):
    bank = make_business_app(CLIENT_TOKENS="ann:token-ann-first,ann:token-ann-second,bob:token-bob").test_client()
    assert bank.post("/deposit/anns/5.00", headers=bearer("token-ann-first")).json["balance"] == "5.00"
    assert bank.post("/withdrawal/anns/1.00", headers=bearer("token-ann-second")).json["balance"] == "4.00"
    assert bank.post("/withdrawal/anns/1.00", headers=bearer("token-bob")).status_code == 404

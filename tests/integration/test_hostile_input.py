"""The inputs people and attackers actually send: each gets a clear 4xx JSON error and changes nothing."""
import pytest

from tests.helpers import CLIENT_TOKEN, DATA_TOKENS, OPERATOR_TOKEN, bearer

CLIENT = bearer(CLIENT_TOKEN)
LONG = "9" * 10_000

BUSINESS_CASES = [
    # (method, path, headers, body keyword arguments, expected statuses)
    *[("POST", f"/deposit/alice/{amount}", CLIENT, {}, {400}) for amount in
      ["-0.00", "+5", "%205", "5.", ".5", "%EF%BC%91%EF%BC%92", "1_000", "0x10", "1e3", "NaN", "Infinity", LONG]],
    *[("POST", f"/withdrawal/alice/{amount}", CLIENT, {}, {400}) for amount in ["-0.00", "5.", LONG]],
    ("POST", f"/deposit/{'a' * 10_000}/1.00", CLIENT, {}, {400}),
    ("POST", "/deposit/%C3%BCn%C3%AF/1.00", CLIENT, {}, {400}),
    ("POST", "/deposit/a%2Fb/1.00", CLIENT, {}, {404}),
    ("POST", "/deposit/..%2Falice/1.00", CLIENT, {}, {404}),
    ("POST", "/transfer/alice/alice%2F..%2Fbob/1.00", CLIENT, {}, {404}),
    ("POST", "/deposit/alice/1.00", {}, {}, {401}),
    ("POST", "/deposit/alice/1.00", {"Authorization": ""}, {}, {401}),
    ("POST", "/deposit/alice/1.00", {"Authorization": "Bearer "}, {}, {401}),
    ("POST", "/deposit/alice/1.00", {"Authorization": "Bearer a b c"}, {}, {401}),
    ("POST", "/deposit/alice/1.00", {"Authorization": f"Basic {CLIENT_TOKEN}"}, {}, {401}),
    ("POST", "/deposit/alice/1.00", bearer(DATA_TOKENS["b1"]), {}, {401}),
    ("POST", "/deposit/alice/1.00", {**CLIENT, "Idempotency-Key": "k" * 10_000}, {}, {400}),
    ("POST", "/deposit/alice/1.00", CLIENT, {"data": "amount=1000", "content_type": "text/plain"}, {400}),
    ("POST", "/deposit/alice/1.00", CLIENT, {"json": {"amount": "1000.00"}}, {400}),
    ("POST", "/deposit/alice/1.00", CLIENT, {"data": "x" * 100_000, "content_type": "application/json"}, {413}),
    ("DELETE", "/balance/alice", CLIENT, {}, {405}),
    *[("GET", f"/history/alice?{query}", CLIENT, {}, {400}) for query in
      [f"limit={LONG}", "limit=1e3", "limit=%EF%BC%91", "limit=", f"cursor={LONG}", "cursor=%FF%FE", "cursor=%20",
       "cursor=YmVmb3JlOjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ", "cursor=..%2F..%2Fetc"]],
    ("GET", f"/history/{'a' * 10_000}", CLIENT, {}, {400}),
    ("GET", "/history/alice", bearer(DATA_TOKENS["b1"]), {}, {401}),
    ("GET", "/history/alice", CLIENT, {"json": {"limit": 5}}, {400}),
    ("POST", "/history/alice", CLIENT, {}, {405}),
    ("GET", "/balance/alice/../bob", CLIENT, {}, {404}),
    ("POST", f"/accounts/{'a' * 10_000}", CLIENT, {}, {400}),
    ("POST", "/accounts/%C3%BCn%C3%AF", CLIENT, {}, {400}),
    ("POST", "/accounts/alice", CLIENT, {}, {409}),
    ("POST", "/accounts/other", {**CLIENT, "Idempotency-Key": "k" * 10_000}, {}, {400}),
    ("POST", "/accounts/other", CLIENT, {"json": {"owner": "tester"}}, {400}),
    ("POST", "/accounts/other", bearer(OPERATOR_TOKEN), {}, {403}),
    ("POST", "/deposit/alice/1.00", bearer(OPERATOR_TOKEN), {}, {403}),
    ("POST", "/withdrawal/alice/1.00", bearer("other-client-token"), {}, {404}),
    ("POST", "/transfer/alice/bob/1.00", bearer("other-client-token"), {}, {404}),
    ("DELETE", "/accounts/alice", CLIENT, {}, {405}),
    ("POST", "/accounts/alice/owner/other", CLIENT, {}, {403}),
    ("POST", "/accounts/alice/owner/other", bearer(OPERATOR_TOKEN), {}, {409}),
    ("POST", "/accounts/alice/owner/nobody", bearer(OPERATOR_TOKEN), {}, {404}),
    ("POST", "/accounts/alice/owner/%C3%BC", bearer(OPERATOR_TOKEN), {}, {400}),
    ("POST", f"/accounts/alice/owner/{'a' * 65}", bearer(OPERATOR_TOKEN), {}, {400}),
    ("POST", "/accounts/alice/owner/other", {**bearer(OPERATOR_TOKEN), "Idempotency-Key": " "}, {}, {400}),
    ("GET", "/accounts/alice", bearer("other-client-token"), {}, {404}),
    *[("GET", f"/accounts?{query}", CLIENT, {}, {400}) for query in
      [f"limit={LONG}", "limit=0", "limit=101", "limit=-1", f"cursor={LONG}", "cursor=%FF", "cursor=YWZ0ZXI6Li4vYQ",
       "cursor=YmVmb3JlOjU"]],
    *[("POST", f"/holds/alice/bob/1.00?expires_in={seconds}", CLIENT, {}, {400}) for seconds in
      [LONG, "-1", "0", "1.5", "1e3", "%EF%BC%91", "", "2592001"]],
    *[("POST", f"/holds/alice/bob/{amount}", CLIENT, {}, {400}) for amount in ["-0.00", "0", "1e3", LONG]],
    ("POST", "/holds/alice/alice/1.00", CLIENT, {}, {400}),
    ("POST", "/holds/alice/nobody/1.00", CLIENT, {}, {404}),
    ("POST", "/holds/alice/bob/1000.00", CLIENT, {}, {404, 422}),
    ("POST", "/holds/alice/bob/1.00", bearer(OPERATOR_TOKEN), {}, {403}),
    ("POST", "/holds/alice/bob/1.00", bearer("other-client-token"), {}, {404}),
    *[("POST", f"/holds/{hold}/{action}", CLIENT, {}, {400}) for hold in
      [LONG, "0" * 31, "0" * 33, "G" * 32, "%C3%BC" * 16] for action in ["capture", "release"]],
    ("POST", f"/holds/..%2F{'0' * 32}/release", CLIENT, {}, {400}),
    *[("POST", f"/holds/{'0' * 32}/{action}", CLIENT, {}, {404}) for action in ["capture", "release"]],
    *[("POST", f"/holds/{'0' * 32}/capture/{amount}", CLIENT, {}, {400}) for amount in ["0", "-1", LONG]],
    ("GET", f"/holds/{'0' * 32}", CLIENT, {}, {404}),
    ("GET", f"/holds/{LONG}", CLIENT, {}, {400}),
    ("DELETE", f"/holds/{'0' * 32}", CLIENT, {}, {405}),
    ("GET", "/accounts/alice/holds", bearer("other-client-token"), {}, {404}),
    ("GET", f"/accounts/{'a' * 65}/holds", CLIENT, {}, {400}),
]


@pytest.fixture
def bank(make_business_app):
    client = make_business_app().test_client()
    assert client.post("/deposit/alice/100.00", headers=CLIENT).status_code == 200
    return client


@pytest.mark.parametrize("method, path, headers, body, statuses", BUSINESS_CASES,
                         ids=[f"{c[0]} {c[1][:40]} {sorted(c[2])}" for c in BUSINESS_CASES])
def test_hostile_requests_to_a_business_server(bank, method, path, headers, body, statuses):
    response = bank.open(path, method=method, headers=headers, **body)
    assert response.status_code in statuses, response.data[:200]
    assert response.is_json and set(response.json) >= {"error", "message"}
    assert bank.get("/balance/alice", headers=CLIENT).json["balance"] == "100.00"
    assert len(bank.get("/history/alice", headers=CLIENT).json["entries"]) == 1


DATA = bearer(DATA_TOKENS["b1"])
DATA_CASES = [
    ("POST", "/getLock/b1/acc", bearer(CLIENT_TOKEN), {}, {401}),
    ("POST", "/getLock/b1/acc", bearer(DATA_TOKENS["b2"]), {}, {403}),
    ("POST", f"/getLock/b1/{'a' * 10_000}", DATA, {}, {400}),
    ("POST", "/getLock/b1/%C3%BC", DATA, {}, {400}),
    ("POST", "/getLock/b1/a%2Fb", DATA, {}, {404}),
    ("POST", "/setAmount/b1/acc", DATA,
     {"data": "amount=5&token=1", "content_type": "application/x-www-form-urlencoded"}, {415}),
    ("POST", "/setAmount/b1/acc", DATA, {"data": "{not json", "content_type": "application/json"}, {400}),
    ("POST", "/setAmount/b1/acc", DATA, {"data": "null", "content_type": "application/json"}, {400}),
    ("POST", "/setAmount/b1/acc", DATA, {"json": {"amount": LONG, "token": 1}}, {400}),
    ("POST", "/setAmount/b1/acc", DATA, {"json": {"amount": "5.00", "token": LONG}}, {400}),
    ("POST", "/setAmount/b1/acc", DATA, {"data": "[" * 100_000, "content_type": "application/json"}, {400, 413}),
    ("POST", "/commit/b1", DATA, {"json": {"writes": [{"account": "acc", "amount": "1.00", "token": 1}],
                                           "operations": [{"id": "k" * 10_000, "request": "r", "result": 1}]}}, {400}),
    ("POST", "/commit/b1", DATA, {"data": "x" * 2_000_000, "content_type": "application/json"}, {413}),
    ("POST", "/getLocks/b1", DATA, {"json": {"accounts": ["acc"], "call": "c" * 65}}, {400}),
    ("POST", "/getLocks/b1", DATA, {"json": {"accounts": ["acc"], "call": ["c"]}}, {400}),
    ("POST", "/getLocks/b1", {**DATA, "X-Answer-By": "soon"}, {"json": {"accounts": ["acc"]}}, {400}),
    ("POST", "/getLocks/b1", {**DATA, "X-Answer-By": LONG}, {"json": {"accounts": ["acc"]}}, {400}),
    ("POST", "/getLocks/b1", {**DATA, "X-Answer-By": "1"}, {"json": {"accounts": ["acc"], "call": "c"}}, {503}),
    ("GET", f"/getAmount/b1/acc?token={LONG}", DATA, {}, {400}),
    ("GET", "/getAmount/b1/acc?wait_ms=-1", DATA, {}, {400}),
    ("GET", f"/getHistory/b1/acc?before={LONG}", DATA, {}, {400}),
    ("GET", "/getHistory/b1/acc?limit=-1", DATA, {}, {400}),
    ("GET", "/getHistory/b1/acc?before=1.5", DATA, {}, {400}),
    ("GET", "/getHistory/b2/acc", DATA, {}, {403}),
    *[("GET", f"/getAccounts/b1/{owner}", DATA, {}, {400}) for owner in ["%C3%BC", "a" * 65, "a.b"]],
    *[("GET", f"/getAccounts/b1/tester?{query}", DATA, {}, {400}) for query in
      ["after=%2F", f"after={'a' * 65}", "limit=0", "limit=101", f"limit={LONG}"]],
    ("GET", "/getAccounts/b2/tester", DATA, {}, {403}),
    *[("GET", f"/getHistory/b1/acc?owner={owner}", DATA, {}, {400}) for owner in ["%2F", "a" * 65, "", "a%20b"]],
    ("GET", "/getHistory/b1/acc?owner=nobody", DATA, {}, {404}),
    *[("POST", "/commit/b1", DATA, {"json": {"writes": [{"account": "acc", "amount": "1.00", "token": 1,
                                                         "owner": owner}]}}, {400})
      for owner in ["", "a b", "a" * 65, ["tester"], 7]],
    *[("POST", "/commit/b1", DATA, {"json": {"writes": [{"account": "acc", "amount": "1.00", "token": 1}],
                                              "entries": entries}}, {400}) for entries in [
        [{"account": "acc", "kind": "deposit", "amount": LONG, "balance": "1.00", "operation": "o"}],
        [{"account": "acc", "kind": "deposit", "amount": "1.00", "balance": "1.00", "operation": "o" * 10_000}],
        [{"account": ["acc"], "kind": "deposit", "amount": "1.00", "balance": "1.00", "operation": "o"}],
        [{"account": "acc", "kind": {"x": 1}, "amount": "1.00", "balance": "1.00", "operation": "o"}],
        [{"account": "acc", "kind": "deposit", "amount": 1.0, "balance": 1.0, "operation": "o"}],
        {"acc": []}, [[[[]]]]]],
    *[("POST", "/commit/b1", DATA, {"json": {"writes": [{"account": "acc", "amount": "100.00", "token": 1}],
                                              "holds": holds}}, {400}) for holds in [
        [{"id": "0" * 32, "origin": "acc", "target": "acc", "amount": "1.00", "expires_at_ms": 1, "state": "held",
          "captured": "0.00", "closed_at_ms": None, "origin_owner": "t"}],
        [{"id": "0" * 32, "origin": "other", "target": "b", "amount": "1.00", "expires_at_ms": 1, "state": "held",
          "captured": "0.00", "closed_at_ms": None, "origin_owner": "t"}],
        [{"id": "0" * 32, "origin": "acc", "target": "b", "amount": "0.00", "expires_at_ms": 1, "state": "held",
          "captured": "0.00", "closed_at_ms": None, "origin_owner": "t"}],
        [{"id": "0" * 32, "origin": "acc", "target": "b", "amount": "1.00", "expires_at_ms": 1, "state": "held",
          "captured": "0.00", "closed_at_ms": 5, "origin_owner": "t"}],
        [{"id": "0" * 32, "origin": "acc", "target": "b", "amount": "1.00", "expires_at_ms": 1,
          "state": "captured", "captured": "2.00", "closed_at_ms": 5, "origin_owner": "t"}],
        [{"id": "x", "origin": "acc", "target": "b", "amount": "1.00", "expires_at_ms": 1.5, "state": "gone",
          "captured": "0.00", "closed_at_ms": None, "origin_owner": "t"}],
        {"holds": 1}, [[]], ["0" * 32]]],
    ("GET", f"/getHold/b1/{LONG}", DATA, {}, {400}),
    ("GET", f"/getHold/b1/{'0' * 32}", DATA, {}, {404}),
    ("GET", f"/getHold/b2/{'0' * 32}", DATA, {}, {403}),
    *[("GET", f"/dueHolds/b1?limit={limit}", DATA, {}, {400}) for limit in ["0", "201", "-1", LONG, "x"]],
    ("GET", "/dueHolds/b2", DATA, {}, {403}),
]


@pytest.mark.parametrize("method, path, headers, body, statuses", DATA_CASES,
                         ids=[f"{c[0]} {c[1][:40]}" for c in DATA_CASES])
def test_hostile_requests_to_the_data_server(data_client, b1, method, path, headers, body, statuses):
    token = data_client.post("/getLock/b1/acc", headers=b1).json["token"]
    data_client.post("/setAmount/b1/acc", headers=b1, json={"amount": "100.00", "token": token, "unlock": True})
    response = data_client.open(path, method=method, headers=headers, **body)
    assert response.status_code in statuses, response.data[:200]
    assert response.is_json and set(response.json) >= {"error", "message"}
    assert data_client.get("/getAmount/b1/acc", headers=b1).json["amount"] == "100.00"
    assert data_client.get("/health").json["accounts"] == 1
    assert len(data_client.get("/getHistory/b1/acc", headers=b1).json["entries"]) == 1

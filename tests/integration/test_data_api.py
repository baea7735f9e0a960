"""Every data-server route and status, through the Flask test client."""
import pytest

from shared.settings import load_data_settings
from tests.helpers import DATA_TOKENS, assert_error, bearer, data_environ, lock, set_amount


def test_get_lock_grants_a_fencing_token_and_reports_an_unknown_account_as_null(data_client, b1):
    response = lock(data_client, b1)
    assert response.status_code == 200
    assert response.json["amount"] is None and response.json["ttl"] == 5
    assert isinstance(response.json["token"], int)


def test_tokens_only_grow_and_never_repeat(data_client, b1):
    tokens = []
    for _ in range(5):
        token = lock(data_client, b1).json["token"]
        data_client.post("/unLock/b1/acc", headers=b1, json={"token": token})
        tokens.append(token)
    assert tokens == sorted(set(tokens))


def test_a_held_lock_is_423_for_another_business_with_holder_and_retry_after(data_client, b1, b2):
    lock(data_client, b1)
    response = lock(data_client, b2, business="b2")
    assert_error(response, 423, "locked")
    assert response.json["holder"] == "b1" and int(response.headers["Retry-After"]) >= 1


def test_a_held_lock_is_423_for_another_worker_of_the_same_business(data_client, b1):
    lock(data_client, b1)
    assert_error(lock(data_client, b1), 423, "locked")


@pytest.mark.embedded_only("etcd's leases expire in real time; this test moves a test clock")
def test_the_holder_renews_with_its_token_and_keeps_it(data_client, b1, clock):
    token = lock(data_client, b1).json["token"]
    clock.advance(4)
    renewed = lock(data_client, b1, token=token)
    assert renewed.status_code == 200 and renewed.json["token"] == token
    clock.advance(4)
    assert_error(lock(data_client, b1), 423, "locked")


@pytest.mark.embedded_only("etcd's leases expire in real time; this test moves a test clock")
def test_renewing_an_expired_lease_is_409(data_client, b1, clock):
    token = lock(data_client, b1).json["token"]
    clock.advance(5)
    assert_error(lock(data_client, b1, token=token), 409, "not_lock_holder")


@pytest.mark.embedded_only("etcd's leases expire in real time; this test moves a test clock")
def test_an_expired_lease_can_be_taken_and_its_old_token_writes_nothing(data_client, b1, b2, clock):
    old = set_amount(data_client)
    old = lock(data_client, b1).json["token"]
    clock.advance(5.01)
    new = lock(data_client, b2, business="b2")
    assert new.status_code == 200 and new.json["token"] > old
    stale = data_client.post("/setAmount/b1/acc", headers=b1, json={"amount": "999.00", "token": old})
    assert_error(stale, 409, "not_lock_holder")
    assert data_client.get(f"/getAmount/b2/acc?token={new.json['token']}", headers=b2).json["amount"] == "100.00"


def test_unlock_releases_only_the_holders_lease(data_client, b1, b2):
    token = lock(data_client, b1).json["token"]
    assert_error(data_client.post("/unLock/b2/acc", headers=b2, json={"token": token}), 409, "not_lock_holder")
    assert_error(data_client.post("/unLock/b1/acc", headers=b1, json={"token": token + 1}), 409, "not_lock_holder")
    assert data_client.post("/unLock/b1/acc", headers=b1, json={"token": token}).status_code == 200
    assert_error(data_client.post("/unLock/b1/acc", headers=b1, json={"token": token}), 409, "not_lock_holder")


def test_an_account_locked_for_creation_and_never_written_disappears(data_client, b1):
    token = lock(data_client, b1, "ghost").json["token"]
    data_client.post("/unLock/b1/ghost", headers=b1, json={"token": token})
    assert_error(data_client.get("/getAmount/b1/ghost", headers=b1), 404, "account_not_found")


def test_set_amount_writes_under_the_lease_and_can_release_it(data_client, b1, b2):
    token = lock(data_client, b1).json["token"]
    response = data_client.post("/setAmount/b1/acc", headers=b1, json={"amount": "150.5", "token": token})
    assert response.status_code == 200 and response.json["amount"] == "150.50"
    assert_error(data_client.get("/getAmount/b2/acc", headers=b2), 423, "locked")
    assert data_client.get(f"/getAmount/b1/acc?token={token}", headers=b1).json["amount"] == "150.50"
    data_client.post("/setAmount/b1/acc", headers=b1, json={"amount": "150.00", "token": token, "unlock": True})
    read = data_client.get("/getAmount/b2/acc", headers=b2).json
    assert read == {"account": "acc", "amount": "150.00", "owner": None, "holds": []}


@pytest.mark.parametrize("amount", ["-1.00", "abc", "NaN", "Infinity", "1e3", "10.555", "", None, 10, 1.5, True])
def test_set_amount_refuses_a_bad_amount_and_changes_nothing(data_client, b1, amount):
    set_amount(data_client)
    token = lock(data_client, b1).json["token"]
    response = data_client.post("/setAmount/b1/acc", headers=b1, json={"amount": amount, "token": token})
    assert_error(response, 400, "invalid_amount")
    assert data_client.get(f"/getAmount/b1/acc?token={token}", headers=b1).json["amount"] == "100.00"


@pytest.mark.parametrize("token", [None, "1", 0, -1, 1.0, True, 2 ** 64])
def test_set_amount_refuses_a_malformed_token(data_client, b1, token):
    assert_error(data_client.post("/setAmount/b1/acc", headers=b1, json={"amount": "1.00", "token": token}),
                 400, "invalid_token")


def test_get_amount_of_an_unknown_account_is_404(data_client, b1):
    assert_error(data_client.get("/getAmount/b1/nobody", headers=b1), 404, "account_not_found")


@pytest.mark.parametrize("query", ["token=abc", "token=-1", "token=" + "9" * 30])
def test_get_amount_refuses_a_malformed_token(data_client, b1, query):
    assert_error(data_client.get(f"/getAmount/b1/acc?{query}", headers=b1), 400, "invalid_token")


def commit_body(writes, operations=(), unlock=True):
    return {"writes": [{"account": a, "amount": amount, "token": t} for a, amount, t in writes],
            "operations": list(operations), "unlock": unlock}


def test_commit_writes_several_accounts_and_releases_them(data_client, b1, b2):
    set_amount(data_client, "x", "10.00")
    set_amount(data_client, "y", "0.00")
    tx, ty = lock(data_client, b1, "x").json["token"], lock(data_client, b1, "y").json["token"]
    response = data_client.post("/commit/b1", headers=b1, json=commit_body([("x", "4.00", tx), ("y", "6.00", ty)]))
    assert response.status_code == 200 and response.json["replayed"] is False
    assert data_client.get("/getAmount/b2/x", headers=b2).json["amount"] == "4.00"
    assert data_client.get("/getAmount/b2/y", headers=b2).json["amount"] == "6.00"


@pytest.mark.embedded_only("etcd's leases expire in real time; this test moves a test clock")
def test_commit_is_all_or_nothing_when_one_lease_is_stale(data_client, b1, b2, clock):
    set_amount(data_client, "x", "10.00")
    set_amount(data_client, "y", "0.00")
    tx = lock(data_client, b1, "x").json["token"]
    ty = lock(data_client, b1, "y").json["token"]
    clock.advance(4)
    lock(data_client, b1, "x", token=tx)
    clock.advance(2)
    response = data_client.post("/commit/b1", headers=b1, json=commit_body([("x", "4.00", tx), ("y", "6.00", ty)]))
    assert_error(response, 409, "not_lock_holder")
    assert data_client.get(f"/getAmount/b1/x?token={tx}", headers=b1).json["amount"] == "10.00"
    assert data_client.get("/getAmount/b2/y", headers=b2).json["amount"] == "0.00"


def test_a_repeated_operation_id_returns_the_first_result_and_applies_nothing(data_client, b1):
    operation = {"id": "op-1", "request": "deposit acc 5.00", "result": {"balance": "105.00"}}
    set_amount(data_client)
    token = lock(data_client, b1).json["token"]
    first = data_client.post("/commit/b1", headers=b1, json=commit_body([("acc", "105.00", token)], [operation]))
    assert first.json["replayed"] is False
    token = lock(data_client, b1, lookup=["op-1", "op-2"]).json
    assert token["operations"] == {"op-1": {"request": "deposit acc 5.00", "result": {"balance": "105.00"}}}
    again = data_client.post("/commit/b1", headers=b1,
                             json=commit_body([("acc", "110.00", token["token"])], [operation]))
    assert again.status_code == 200 and again.json["replayed"] is True
    assert again.json["results"] == [{"balance": "105.00"}]
    assert data_client.get("/getAmount/b1/acc", headers=b1).json["amount"] == "105.00"


def test_a_recorded_operation_id_with_another_request_is_409_and_applies_nothing(data_client, b1):
    set_amount(data_client)
    token = lock(data_client, b1).json["token"]
    data_client.post("/commit/b1", headers=b1, json=commit_body(
        [("acc", "105.00", token)], [{"id": "op-1", "request": "deposit acc 5.00", "result": None}]))
    token = lock(data_client, b1).json["token"]
    response = data_client.post("/commit/b1", headers=b1, json=commit_body(
        [("acc", "1.00", token)], [{"id": "op-1", "request": "withdraw acc 104.00", "result": None}]))
    assert_error(response, 409, "operation_conflict")
    assert data_client.get(f"/getAmount/b1/acc?token={token}", headers=b1).json["amount"] == "105.00"


def test_a_commit_may_record_operations_without_writing(data_client, b1):
    operation = {"id": "op-refused", "request": "withdraw ghost 1", "result": {"refused": "account_not_found"}}
    response = data_client.post("/commit/b1", headers=b1, json={"writes": [], "operations": [operation]})
    assert response.status_code == 200 and response.json["replayed"] is False
    recorded = lock(data_client, b1, "ghost", lookup=["op-refused"]).json["operations"]
    assert recorded == {"op-refused": {"request": "withdraw ghost 1", "result": {"refused": "account_not_found"}}}


def test_a_commit_gives_back_the_leases_it_did_not_write(data_client, b1, b2):
    set_amount(data_client, "x", "10.00")
    set_amount(data_client, "y", "3.00")
    tx, ty = lock(data_client, b1, "x").json["token"], lock(data_client, b1, "y").json["token"]
    body = {**commit_body([("x", "4.00", tx)]), "release": [{"account": "y", "token": ty}]}
    assert data_client.post("/commit/b1", headers=b1, json=body).status_code == 200
    assert lock(data_client, b2, "y", business="b2").json["amount"] == "3.00"
    # Leases alone may be given back, and one no longer held is no error.
    tz = lock(data_client, b1, "z").json["token"]
    body = {"writes": [], "release": [{"account": "z", "token": tz}, {"account": "x", "token": tx}]}
    assert data_client.post("/commit/b1", headers=b1, json=body).status_code == 200
    assert lock(data_client, b2, "z", business="b2").status_code == 200


@pytest.mark.parametrize("body", [
    {}, {"writes": []}, {"writes": "x"}, {"writes": [], "release": "x"}, {"writes": [], "release": [{"account": "a"}]},
    {"writes": [{"account": "a", "amount": "1.00", "token": 1}], "release": [{"account": "a", "token": 1}]},
    {"writes": [], "release": [{"account": "a", "token": 1}, {"account": "a", "token": 2}]},
    {"writes": [{"account": "a/b", "amount": "1.00", "token": 1}]},
    {"writes": [{"account": "a", "amount": "1.00", "token": 1}, {"account": "a", "amount": "2.00", "token": 1}]},
    {"writes": [{"account": "a", "amount": "1.00", "token": 1}], "operations": [{"id": "x"}]},
    {"writes": [{"account": "a", "amount": "1.00", "token": 1}], "operations": "x"},
    {"writes": [{"account": "a", "amount": "1.00", "token": 1}], "unlock": "yes"},
    {"writes": [{"account": f"a{i}", "amount": "1.00", "token": 1} for i in range(101)]},
])
def test_commit_refuses_a_malformed_body(data_client, b1, body):
    response = data_client.post("/commit/b1", headers=b1, json=body)
    assert response.status_code == 400 and response.json["error"].startswith("invalid_")


def test_health_needs_no_token(data_client):
    assert data_client.get("/health").json["status"] == "ok"


@pytest.mark.parametrize("method, path", [
    ("post", "/getLock/b1/acc"), ("post", "/unLock/b1/acc"), ("post", "/setAmount/b1/acc"),
    ("get", "/getAmount/b1/acc"), ("post", "/commit/b1"), ("get", "/getHistory/b1/acc"),
])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic YTpi"},
                                     {"Authorization": "Bearer"}, {"Authorization": ""}])
def test_every_route_needs_a_business_token(data_client, method, path, headers):
    response = getattr(data_client, method)(path, headers=headers, json={})
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_may_act_only_for_its_own_business(data_client, b1):
    assert_error(lock(data_client, b1, business="b2"), 403, "wrong_business")
    assert_error(data_client.post("/commit/b2", headers=b1, json={}), 403, "wrong_business")


@pytest.mark.parametrize("account", ["a" * 65, "a.b", "ä", "a%20b"])
def test_a_malformed_account_id_is_400(data_client, b1, account):
    assert_error(lock(data_client, b1, account), 400, "invalid_account")


def test_unknown_routes_and_methods_answer_json(data_client, b1):
    assert_error(data_client.get("/nowhere"), 404, "not_found")
    response = data_client.get("/getLock/b1/acc", headers=b1)
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("kwargs, status", [
    ({"data": "not json", "content_type": "application/json"}, 400),
    ({"data": "[1, 2]", "content_type": "application/json"}, 400),
    ({"data": "token=1", "content_type": "application/x-www-form-urlencoded"}, 415),
    ({"data": "x" * 2_000_000, "content_type": "application/json"}, 413),
])
def test_malformed_bodies_are_4xx_json(data_client, b1, kwargs, status):
    response = data_client.post("/unLock/b1/acc", headers=b1, **kwargs)
    assert response.status_code == status and response.is_json and "error" in response.json


def test_a_request_id_is_echoed_and_a_bad_one_replaced(data_client, b1):
    assert data_client.get("/health", headers={"X-Request-ID": "abc-1"}).headers["X-Request-ID"] == "abc-1"
    for bad in ("a b", "x" * 129, "ü"):
        assert data_client.get("/health", headers={"X-Request-ID": bad}).headers["X-Request-ID"] != bad


def test_tokens_are_never_logged(b1, capsys, make_data_app):
    data_client = make_data_app(load_data_settings(data_environ(LOG_LEVEL="DEBUG"))).test_client()
    lock(data_client, b1)
    data_client.post("/getLock/b1/acc", headers=bearer("wrong-token-123"))
    err = capsys.readouterr().err
    assert "op=get_lock" in err and "status=401" in err
    assert DATA_TOKENS["b1"] not in err and "wrong-token-123" not in err


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/getLock/b2/held", {"token": "a string"}),
    ("POST", "/getLock/b2/held", {"wait_ms": "soon"}),
    ("POST", "/getLock/b2/held", {"lookup": "op-1"}),
    ("POST", "/getLocks/b2", {"accounts": ["held", "held"]}),
    ("POST", "/getLocks/b2", {"accounts": ["held"], "wait_ms": -1}),
    ("POST", "/unLock/b2/held", {"token": "a string"}),
    ("POST", "/setAmount/b2/held", {"amount": "1.001", "token": 1}),
    ("GET", "/getAmount/b2/held?token=a-string", None),
    ("GET", "/getAmount/b2/held?wait_ms=-5", None),
    ("POST", "/commit/b2", {"writes": [{"account": "held", "amount": "1.00", "token": True}]}),
    ("POST", "/commit/b2", {"writes": [], "operations": [{"id": "op-1"}]}),
])
def test_a_malformed_request_is_400_whatever_the_state_of_its_account(data_client, b1, b2, method, path, body):
    """Validation comes before the store is asked: a held account must not turn a bad request into 423 or 409."""
    lock(data_client, b1, "held")
    response = data_client.open(path, method=method, headers=b2, json=body)
    assert response.status_code == 400 and response.json["error"].startswith("invalid_"), response.json
    assert lock(data_client, b2, "held", business="b2").json["holder"] == "b1"

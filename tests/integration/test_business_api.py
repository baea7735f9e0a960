"""Every business route and status, through the Flask test client, against a real data server."""
import logging

import pytest

from business.business_server import create_app
from harness.processes import free_port
from shared.settings import load_business_settings
from tests.helpers import assert_error, bearer, business_environ


@pytest.fixture
def bank(make_business_app):
    return make_business_app().test_client()


def test_deposit_creates_the_account_and_answers_the_new_balance(bank, client_headers):
    response = bank.post("/deposit/alice/150.5", headers=client_headers)
    assert response.status_code == 200
    assert response.json == {"account": "alice", "amount": "150.50", "balance": "150.50"}
    assert bank.post("/deposit/alice/0.50", headers=client_headers).json["balance"] == "151.00"


def test_balance_of_an_account_and_of_an_unknown_one(bank, client_headers):
    bank.post("/deposit/alice/10", headers=client_headers)
    assert bank.get("/balance/alice", headers=client_headers).json == {
        "account": "alice", "balance": "10.00", "available": "10.00"}
    assert_error(bank.get("/balance/nobody", headers=client_headers), 404, "account_not_found")


def test_withdrawal_answers_the_new_balance_and_refuses_an_overdraft(bank, client_headers):
    bank.post("/deposit/alice/10", headers=client_headers)
    assert bank.post("/withdrawal/alice/3.25", headers=client_headers).json["balance"] == "6.75"
    assert_error(bank.post("/withdrawal/alice/6.76", headers=client_headers), 422, "insufficient_funds")
    assert_error(bank.post("/withdrawal/nobody/1", headers=client_headers), 404, "account_not_found")
    assert bank.get("/balance/alice", headers=client_headers).json["balance"] == "6.75"


def test_transfer_moves_money_or_nothing(bank, client_headers):
    bank.post("/deposit/a/100", headers=client_headers)
    bank.post("/deposit/b/1", headers=client_headers)
    response = bank.post("/transfer/a/b/30.01", headers=client_headers)
    assert response.json == {"origin": "a", "target": "b", "amount": "30.01", "origin_balance": "69.99",
                             "target_balance": "31.01"}
    assert_error(bank.post("/transfer/a/b/70", headers=client_headers), 422, "insufficient_funds")
    assert_error(bank.post("/transfer/a/nobody/1", headers=client_headers), 404, "account_not_found")
    assert_error(bank.post("/transfer/nobody/a/1", headers=client_headers), 404, "account_not_found")
    assert_error(bank.post("/transfer/a/a/1", headers=client_headers), 400, "same_account")
    assert [bank.get(f"/balance/{x}", headers=client_headers).json["balance"] for x in "ab"] == ["69.99", "31.01"]


@pytest.mark.parametrize("amount", ["1e3", "-5", "0", "0.00", "NaN", "10.555", "abc", "+5", "5.", ".5", "１２",
                                    "1_000", "1000000000.01", "9" * 30])
def test_malformed_or_out_of_range_amounts_are_400_and_change_nothing(bank, client_headers, amount):
    bank.post("/deposit/alice/10", headers=client_headers)
    for path in (f"/deposit/alice/{amount}", f"/withdrawal/alice/{amount}", f"/transfer/alice/bob/{amount}"):
        assert_error(bank.post(path, headers=client_headers), 400, "invalid_amount")
    assert bank.get("/balance/alice", headers=client_headers).json["balance"] == "10.00"


def test_the_largest_amount_is_accepted(bank, client_headers):
    assert bank.post("/deposit/alice/1000000000.00", headers=client_headers).status_code == 200


@pytest.mark.parametrize("account", ["a" * 65, "a.b", "ünï", "a%20b"])
def test_malformed_account_ids_are_400(bank, client_headers, account):
    assert_error(bank.post(f"/deposit/{account}/1", headers=client_headers), 400, "invalid_account")
    assert_error(bank.get(f"/balance/{account}", headers=client_headers), 400, "invalid_account")


@pytest.mark.parametrize("headers", [{}, bearer("wrong-token"), {"Authorization": "Basic YTpi"},
                                     bearer("test-data-token-b1")])
def test_every_route_needs_a_client_token(bank, headers):
    for response in (bank.post("/deposit/a/1", headers=headers), bank.get("/balance/a", headers=headers),
                     bank.post("/withdrawal/a/1", headers=headers), bank.post("/transfer/a/b/1", headers=headers)):
        assert_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_health_needs_no_token(bank):
    assert bank.get("/health").json["status"] == "ok"


def test_unknown_routes_and_wrong_methods_answer_json(bank, client_headers):
    assert_error(bank.get("/nowhere", headers=client_headers), 404, "not_found")
    assert_error(bank.get("/deposit/a/1", headers=client_headers), 405, "method_not_allowed")


def test_a_retry_with_the_same_key_returns_the_first_result_on_any_server(make_business_app, client_headers):
    b1, b2 = make_business_app("b1").test_client(), make_business_app("b2").test_client()
    b1.post("/deposit/alice/100", headers=client_headers)
    keyed = {**client_headers, "Idempotency-Key": "withdraw-42"}
    first = b1.post("/withdrawal/alice/40", headers=keyed)
    again = b2.post("/withdrawal/alice/40", headers=keyed)
    assert first.status_code == again.status_code == 200
    assert first.json == again.json == {"account": "alice", "amount": "40.00", "balance": "60.00"}
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert_error(b2.post("/withdrawal/alice/41", headers=keyed), 422, "idempotency_conflict")
    assert b1.get("/balance/alice", headers=client_headers).json["balance"] == "60.00"


def test_a_keyed_payment_retried_after_many_writes_is_applied_once(serve_data, client_headers):
    app = create_app(load_business_settings(business_environ("b1", serve_data(DATA_OPERATION_LIMIT="20"))))
    bank = app.test_client()
    keyed = {**client_headers, "Idempotency-Key": "pay-rent"}
    assert bank.post("/deposit/alice/100", headers=keyed).status_code == 200
    for i in range(60):
        bank.post(f"/deposit/bob{i % 3}/1", headers=client_headers)
    for i in range(10):
        bank.post("/deposit/carol/1", headers={**client_headers, "Idempotency-Key": f"carol-{i}"})
    again = bank.post("/deposit/alice/100", headers=keyed)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert bank.get("/balance/alice", headers=client_headers).json["balance"] == "100.00"


def test_a_full_idempotency_store_refuses_new_keyed_writes_and_applies_nothing(serve_data, client_headers):
    app = create_app(load_business_settings(business_environ("b1", serve_data(DATA_OPERATION_LIMIT="2"))))
    bank = app.test_client()
    for i in range(2):
        bank.post("/deposit/alice/1", headers={**client_headers, "Idempotency-Key": f"k{i}"})
    refused = bank.post("/deposit/alice/1", headers={**client_headers, "Idempotency-Key": "k2"})
    assert_error(refused, 503, "idempotency_store_full")
    assert int(refused.headers["Retry-After"]) > 0
    assert bank.get("/balance/alice", headers=client_headers).json["balance"] == "2.00"
    assert bank.post("/deposit/alice/1", headers=client_headers).json["balance"] == "3.00"


@pytest.mark.parametrize("key", ["", "a b", "k" * 129, "ключ"])
def test_a_malformed_idempotency_key_is_400(bank, client_headers, key):
    response = bank.post("/deposit/a/1", headers={**client_headers, "Idempotency-Key": key})
    assert_error(response, 400, "invalid_idempotency_key")
    assert_error(bank.get("/balance/a", headers=client_headers), 404, "account_not_found")


def test_a_data_server_that_takes_no_connection_is_skipped_for_the_next(live_data_url, client_headers):
    dead = f"http://127.0.0.1:{free_port()}"
    bank = create_app(load_business_settings(business_environ("b1", f"{dead},{live_data_url}"))).test_client()
    assert bank.post("/deposit/alice/5.00", headers=client_headers).json["balance"] == "5.00"
    assert bank.get("/balance/alice", headers=client_headers).json["balance"] == "5.00"


def test_an_unreachable_data_server_is_503_data_unavailable(client_headers):
    app = create_app(load_business_settings(business_environ("b1", f"http://127.0.0.1:{free_port()}",
                                                             DATA_TIMEOUT="0.5")))
    response = app.test_client().post("/deposit/alice/1", headers=client_headers)
    assert_error(response, 503, "data_unavailable")
    assert response.headers["Retry-After"] == "1"


def test_the_request_id_reaches_the_data_server(make_business_app, client_headers, capfd, monkeypatch):
    app = make_business_app(LOG_LEVEL="DEBUG")
    monkeypatch.setattr(logging.getLogger("bank.data"), "level", logging.DEBUG)
    app.test_client().post("/deposit/alice/1", headers={**client_headers, "X-Request-ID": "trace-me-1"})
    logged = capfd.readouterr().err
    assert "server=business-b1 rid=trace-me-1 op=deposit account_id=alice amount=1" in logged
    assert "server=data rid=trace-me-1 op=get_lock" in logged
    assert "server=data rid=trace-me-1 op=commit" in logged

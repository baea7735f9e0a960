"""Holds through the bank's API: business apps over one real data server (the live data app of tests/conftest.py).

A hold sets money aside without moving it; the target's owner captures it once, in whole or in part; either party or
an operator releases it; past its expiry it is expired everywhere; a stranger gets 404 as for an unknown hold."""
import threading
import time
import uuid
from types import SimpleNamespace

import pytest

from business.batcher_supervisor import post_worker_init
from shared.money import parse_cents
from tests.helpers import MALLORY_TOKEN, OPERATOR_TOKEN, OTHER_CLIENT_TOKEN, bearer, wait_until

PAYEE, STRANGER, OPERATOR = bearer(OTHER_CLIENT_TOKEN), bearer(MALLORY_TOKEN), bearer(OPERATOR_TOKEN)


@pytest.fixture
def bank(make_business_app, client_headers):
    bank = make_business_app().test_client()
    assert bank.post("/deposit/payer/10.00", headers=client_headers).status_code == 200
    assert bank.post("/accounts/payee", headers=PAYEE).status_code == 201
    return bank


def money(bank, account, headers):
    seen = bank.get(f"/balance/{account}", headers=headers).json
    return seen["balance"], seen["available"]


def statement(bank, account, headers):
    entries = bank.get(f"/history/{account}", headers=headers).json["entries"]
    return [(entry["kind"], entry["amount"], entry["balance"]) for entry in reversed(entries)]


def test_a_hold_sets_money_aside_and_a_partial_capture_moves_part_and_gives_back_the_rest(bank, client_headers):
    placed = bank.post("/holds/payer/payee/3.00?expires_in=60", headers=client_headers)
    assert placed.status_code == 201
    hold = placed.json
    assert (hold["origin"], hold["target"], hold["amount"], hold["state"], hold["closed_at"]) == (
        "payer", "payee", "3.00", "held", None)
    assert (hold["balance"], hold["available"]) == ("10.00", "7.00")
    assert money(bank, "payer", client_headers) == ("10.00", "7.00")
    assert bank.get("/accounts/payer/holds", headers=client_headers).json["holds"] == [
        {name: hold[name] for name in ("id", "origin", "target", "amount", "state", "expires_at", "closed_at")}]
    assert bank.post("/withdrawal/payer/7.01", headers=client_headers).json["error"] == "insufficient_funds"

    captured = bank.post(f"/holds/{hold['id']}/capture/1.25", headers=PAYEE)
    assert captured.status_code == 200
    assert (captured.json["state"], captured.json["captured"], captured.json["target_balance"]) == (
        "captured", "1.25", "1.25")
    assert "balance" not in captured.json, "the payee sees nothing of the payer's balance"
    assert money(bank, "payer", client_headers) == ("8.75", "8.75")
    assert statement(bank, "payer", client_headers)[1:] == [
        ("hold", "3.00", "10.00"), ("capture_out", "1.25", "8.75"), ("hold_release", "1.75", "8.75")]
    assert statement(bank, "payee", PAYEE) == [("capture_in", "1.25", "1.25")]
    assert bank.get(f"/holds/{hold['id']}", headers=client_headers).json["state"] == "captured"


@pytest.mark.parametrize("second", ["capture", "release"])
def test_a_closed_hold_is_409_hold_closed_and_a_keyed_retry_gets_its_first_answer(bank, client_headers, second):
    hold = bank.post("/holds/payer/payee/3.00", headers=client_headers).json
    first = bank.post(f"/holds/{hold['id']}/release", headers=client_headers | {"Idempotency-Key": "rel-1"})
    assert first.status_code == 200 and first.json["state"] == "released"
    headers = PAYEE if second == "capture" else client_headers
    closed = bank.post(f"/holds/{hold['id']}/{second}", headers=headers)
    assert (closed.status_code, closed.json["error"]) == (409, "hold_closed")
    again = bank.post(f"/holds/{hold['id']}/release", headers=client_headers | {"Idempotency-Key": "rel-1"})
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert money(bank, "payer", client_headers) == ("10.00", "10.00")


def test_a_strangers_every_try_at_a_hold_is_answered_as_for_an_unknown_one(bank, client_headers):
    hold = bank.post("/holds/payer/payee/3.00", headers=client_headers).json
    unknown = uuid.uuid4().hex
    for method, path in (("GET", "/holds/{}"), ("POST", "/holds/{}/capture"), ("POST", "/holds/{}/capture/1.00"),
                         ("POST", "/holds/{}/release")):
        theirs = bank.open(path.format(hold["id"]), method=method, headers=STRANGER)
        nobodys = bank.open(path.format(unknown), method=method, headers=STRANGER)
        assert (theirs.status_code, theirs.json["error"]) == (nobodys.status_code, nobodys.json["error"]) == (
            404, "hold_not_found")
    assert bank.get("/accounts/payer/holds", headers=STRANGER).json["error"] == "account_not_found"
    assert bank.post(f"/holds/{hold['id']}/capture", headers=client_headers).status_code == 403
    assert bank.post("/holds/payer/payee/1.00", headers=PAYEE).json["error"] == "account_not_found"
    assert bank.post("/holds/payer/payee/1.00", headers=OPERATOR).status_code == 403
    assert bank.get(f"/holds/{hold['id']}", headers=OPERATOR).json["state"] == "held"
    assert bank.post(f"/holds/{hold['id']}/release", headers=OPERATOR).json["state"] == "released"
    assert money(bank, "payer", client_headers) == ("10.00", "10.00")


@pytest.mark.parametrize("path, code", [
    ("/holds/payer/payee/0.00", "invalid_amount"), ("/holds/payer/payee/1e3", "invalid_amount"),
    ("/holds/payer/payer/1.00", "same_account"), ("/holds/payer/payee/1.00?expires_in=0", "invalid_expires_in"),
    ("/holds/payer/payee/1.00?expires_in=-5", "invalid_expires_in"),
    ("/holds/payer/payee/1.00?expires_in=99999999999", "invalid_expires_in"),
    ("/holds/payer/payee/1.00?expires_in=2592001", "invalid_expires_in"),
    ("/holds/not-a-hold/release", "invalid_hold"), ("/holds/ABCDEF0123456789ABCDEF0123456789/capture", "invalid_hold"),
    ("/holds/0123456789abcdef0123456789abcdef/capture/0", "invalid_amount")])
def test_a_malformed_hold_request_is_400_and_changes_nothing(bank, client_headers, path, code):
    answer = bank.post(path, headers=client_headers)
    assert (answer.status_code, answer.json["error"]) == (400, code)
    assert money(bank, "payer", client_headers) == ("10.00", "10.00")


def test_a_hold_past_its_expiry_is_expired_everywhere_and_the_next_operation_closes_it(bank, client_headers):
    hold = bank.post("/holds/payer/payee/3.00?expires_in=1", headers=client_headers).json
    expires_at = time.time() + 1
    while time.time() < expires_at + 0.05:
        assert money(bank, "payer", client_headers) in (("10.00", "7.00"), ("10.00", "10.00"))
        time.sleep(0.05)
    assert bank.get(f"/holds/{hold['id']}", headers=client_headers).json["state"] == "expired"
    assert money(bank, "payer", client_headers) == ("10.00", "10.00")
    assert bank.post(f"/holds/{hold['id']}/capture", headers=PAYEE).json["error"] == "hold_closed"
    closed = bank.get(f"/holds/{hold['id']}", headers=client_headers).json
    assert closed["state"] == "expired" and closed["closed_at"] is not None
    assert statement(bank, "payer", client_headers)[1:] == [("hold", "3.00", "10.00"), ("hold_expiry", "3.00", "10.00")]


def test_eight_racing_captures_of_one_hold_apply_exactly_once(make_business_app, client_headers):
    banks = [make_business_app(f"b{i}").test_client() for i in (1, 2, 3)]
    assert banks[0].post("/deposit/payer/10.00", headers=client_headers).status_code == 200
    assert banks[0].post("/accounts/payee", headers=PAYEE).status_code == 201
    hold = banks[0].post("/holds/payer/payee/4.00", headers=client_headers).json
    start, answers = threading.Barrier(8), []

    def capture(index):
        start.wait(10)
        answers.append(banks[index % 3].post(f"/holds/{hold['id']}/capture", headers=PAYEE |
                                             {"Idempotency-Key": f"race-{index}"}))

    threads = [threading.Thread(target=capture, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    outcomes = sorted((answer.status_code, answer.json.get("error")) for answer in answers)
    assert outcomes == [(200, None)] + [(409, "hold_closed")] * 7
    assert parse_cents(banks[1].get("/balance/payer", headers=client_headers).json["balance"]) == 600
    assert parse_cents(banks[2].get("/balance/payee", headers=PAYEE).json["balance"]) == 400
    assert [kind for kind, _, _ in statement(banks[0], "payee", PAYEE)] == ["capture_in"]


def test_an_account_holds_at_most_its_cap_and_a_withdrawal_spends_only_what_is_available(make_business_app,
                                                                                          client_headers):
    bank = make_business_app(HOLDS_PER_ACCOUNT="2").test_client()
    bank.post("/deposit/payer/10.00", headers=client_headers)
    bank.post("/accounts/payee", headers=PAYEE)
    for _ in range(2):
        assert bank.post("/holds/payer/payee/4.00", headers=client_headers).status_code == 201
    assert bank.post("/holds/payer/payee/1.00", headers=client_headers).json["error"] == "too_many_holds"
    assert bank.post("/withdrawal/payer/2.01", headers=client_headers).json["error"] == "insufficient_funds"
    assert bank.post("/transfer/payer/payee/2.00", headers=client_headers).status_code == 200
    assert money(bank, "payer", client_headers) == ("8.00", "0.00")


def test_a_server_without_a_batcher_expires_holds_in_each_worker(bank, client_headers):
    """A business server whose batcher could not start (its socket path too long) batches in each worker, and each
    worker closes due holds itself once gunicorn has it up."""
    expiry = bank.application.extensions["bank.hold_expiry"]
    post_worker_init(SimpleNamespace(wsgi=bank.application))
    try:
        hold = bank.post("/holds/payer/payee/3.00?expires_in=1", headers=client_headers).json
        closed = wait_until(lambda: bank.get(f"/holds/{hold['id']}", headers=client_headers).json["closed_at"], 10,
                            "the worker's own expiry never closed the hold")
        assert closed >= hold["expires_at"]
        assert statement(bank, "payer", client_headers)[-1] == ("hold_expiry", "3.00", "10.00")
    finally:
        expiry.stop()

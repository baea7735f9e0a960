"""A statement through the business API (GET /history/{account}), against a real data server."""
import pytest

from tests.helpers import OPERATOR_TOKEN, assert_error, bearer


@pytest.fixture
def bank(make_business_app):
    return make_business_app().test_client()


def test_a_statement_lists_every_change_newest_first_with_its_balance_after(bank, client_headers):
    bank.post("/deposit/alice/100", headers={**client_headers, "Idempotency-Key": "dep-1"})
    bank.post("/deposit/bob/1", headers=client_headers)
    bank.post("/withdrawal/alice/10.50", headers=client_headers)
    bank.post("/transfer/alice/bob/20", headers={**client_headers, "Idempotency-Key": "tr-1"})
    bank.post("/withdrawal/alice/1000", headers=client_headers)          # refused: leaves no entry
    bank.post("/deposit/alice/100", headers={**client_headers, "Idempotency-Key": "dep-1"})   # a replay: none
    statement = bank.get("/history/alice", headers=client_headers).json
    assert statement["account"] == "alice" and statement["next_cursor"] is None
    assert [(e["seq"], e["kind"], e["amount"], e["balance"], e["counterparty"], e["idempotency_key"])
            for e in statement["entries"]] == [
        (3, "transfer_out", "20.00", "69.50", "bob", "tr-1"),
        (2, "withdrawal", "10.50", "89.50", None, None),
        (1, "deposit", "100.00", "100.00", None, "dep-1")]
    bob = bank.get("/history/bob", headers=client_headers).json["entries"]
    assert [(e["kind"], e["counterparty"], e["balance"]) for e in bob] == [("transfer_in", "alice", "21.00"),
                                                                          ("deposit", None, "1.00")]
    # A transfer's two entries share their operation.
    assert bob[0]["operation"] == statement["entries"][0]["operation"]


def test_a_statement_shows_its_owner_its_own_keys_and_nothing_of_another_clients_payments_in(bank, client_headers):
    other = bearer("other-client-token")
    bank.post("/deposit/shared/5", headers={**client_headers, "Idempotency-Key": "mine-1"})
    bank.post("/deposit/shared/7", headers={**other, "Idempotency-Key": "theirs-1"})
    bank.post("/deposit/theirs/9", headers=other)
    bank.post("/transfer/theirs/shared/1", headers={**other, "Idempotency-Key": "theirs-2"})
    mine = bank.get("/history/shared", headers=client_headers).json["entries"]
    assert [(e["kind"], e["idempotency_key"]) for e in mine] == [("transfer_in", None), ("deposit", None),
                                                                 ("deposit", "mine-1")]
    # A reference that names neither the client nor its key; a transfer's two entries share it.
    for entry in mine:
        assert not any(word in entry["operation"] for word in ("other", "theirs", "tester", "mine"))
    theirs = bank.get("/history/theirs", headers=other).json["entries"]
    assert theirs[0]["operation"] == mine[0]["operation"] and theirs[0]["idempotency_key"] == "theirs-2"
    # An operator sees every entry as recorded: a keyed operation is "client:key".
    seen = bank.get("/history/shared", headers=bearer(OPERATOR_TOKEN)).json["entries"]
    assert [(e["operation"], e["idempotency_key"]) for e in seen] == [("other:theirs-2", "theirs-2"),
                                                                      ("other:theirs-1", "theirs-1"),
                                                                      ("tester:mine-1", "mine-1")]


def test_a_statement_comes_a_page_at_a_time_by_cursor(bank, client_headers):
    for _ in range(5):
        bank.post("/deposit/alice/1", headers=client_headers)
    first = bank.get("/history/alice?limit=2", headers=client_headers).json
    assert [e["seq"] for e in first["entries"]] == [5, 4]
    second = bank.get(f"/history/alice?limit=2&cursor={first['next_cursor']}", headers=client_headers).json
    assert [e["seq"] for e in second["entries"]] == [3, 2]
    last = bank.get(f"/history/alice?limit=2&cursor={second['next_cursor']}", headers=client_headers).json
    assert [e["seq"] for e in last["entries"]] == [1] and last["next_cursor"] is None
    assert len(bank.get("/history/alice", headers=client_headers).json["entries"]) == 5


@pytest.mark.parametrize("query, code", [
    ("limit=0", "invalid_limit"), ("limit=101", "invalid_limit"), ("limit=-1", "invalid_limit"),
    ("limit=abc", "invalid_limit"), ("limit=1.5", "invalid_limit"), ("limit=9999", "invalid_limit"),
    ("cursor=abc", "invalid_cursor"), ("cursor=", "invalid_cursor"), ("cursor=YmVmb3JlOjA", "invalid_cursor"),
    ("cursor=YmVmb3JlOi0x", "invalid_cursor"), ("cursor=" + "A" * 500, "invalid_cursor"),
    ("cursor=%00", "invalid_cursor"), ("cursor=%C3%A4", "invalid_cursor")])
def test_a_bad_limit_or_cursor_is_400(bank, client_headers, query, code):
    bank.post("/deposit/alice/1", headers=client_headers)
    assert_error(bank.get(f"/history/alice?{query}", headers=client_headers), 400, code)


def test_the_statement_of_an_unknown_account_is_404_and_needs_a_token(bank, client_headers):
    assert_error(bank.get("/history/nobody", headers=client_headers), 404, "account_not_found")
    assert_error(bank.get("/history/a.b", headers=client_headers), 400, "invalid_account")
    assert_error(bank.get("/history/alice"), 401, "unauthorized")

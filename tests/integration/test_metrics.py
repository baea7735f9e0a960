"""GET /metrics: operators only, and the counters a user would watch move with what happens."""
import pytest

from tests.helpers import CLIENT_TOKEN, DATA_TOKENS, OPERATOR_TOKEN, bearer, metric_samples, metric_sum

OPERATOR = bearer(OPERATOR_TOKEN)


def scrape(client):
    response = client.get("/metrics", headers=OPERATOR)
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return metric_samples(response.get_data(as_text=True))


@pytest.mark.parametrize("headers", [{}, bearer(DATA_TOKENS["b1"]), bearer(CLIENT_TOKEN), bearer("x" * 20)])
def test_metrics_are_for_operators_only(data_client, make_business_app, headers):
    for client in (data_client, make_business_app().test_client()):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401 and response.json["error"] == "unauthorized"


def test_a_commit_moves_the_data_servers_counters_and_a_held_lease_shows_live(data_client, b1):
    before = scrape(data_client)
    token = data_client.post("/getLock/b1/acc", headers=b1).json["token"]
    assert metric_sum(scrape(data_client), "bank_data_leases") == 1
    data_client.post("/commit/b1", headers=b1, json={
        "writes": [{"account": "acc", "amount": "1.00", "token": token}], "unlock": True})
    data_client.post("/commit/b1", headers=b1, json={
        "writes": [{"account": "acc", "amount": "2.00", "token": token}], "unlock": True})
    after = scrape(data_client)
    assert metric_sum(after, "bank_data_commits_total") - metric_sum(before, "bank_data_commits_total") == 1
    assert metric_sum(after, "bank_data_fencing_refusals_total") - metric_sum(
        before, "bank_data_fencing_refusals_total") == 1
    assert metric_sum(after, "bank_data_leases") == 0 and metric_sum(after, "bank_data_accounts") == 1
    moved = {status: metric_sum(after, "bank_http_requests_total", server="data", route="commit", status=status)
             - metric_sum(before, "bank_http_requests_total", server="data", route="commit", status=status)
             for status in ("200", "409")}
    assert moved == {"200": 1, "409": 1}


def test_a_deposit_moves_the_business_servers_counters(make_business_app, client_headers):
    bank = make_business_app().test_client()
    before = scrape(bank)
    assert bank.post("/deposit/alice/1.00", headers=client_headers).status_code == 200
    # A balance is read without a lock: no lock cycle.
    assert bank.get("/balance/alice", headers=client_headers).status_code == 200
    after = scrape(bank)

    def moved(name, **labels):
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    assert moved("bank_http_requests_total", server="business-b1", route="deposit", status="200") == 1
    assert moved("bank_business_lock_cycles_total") == 1 and moved("bank_business_batch_size_count") == 1
    assert metric_sum(after, "bank_business_queue_depth") == 0

"""Every real server serves /metrics summed over its gunicorn workers, and a deposit moves the right counters."""
import requests

from tests.helpers import CLIENT_TOKEN, OPERATOR_TOKEN, bearer, metric_samples, metric_sum


def scrape(server):
    response = requests.get(f"{server.url}/metrics", headers=bearer(OPERATOR_TOKEN), timeout=5)
    assert response.status_code == 200, response.text
    return metric_samples(response.text)


def test_deposits_move_the_counters_of_every_server_they_pass_through(start_system):
    system = start_system()
    servers = [system.data, *system.businesses]
    assert requests.get(f"{system.data.url}/metrics", timeout=5).status_code == 401
    before = {server.name: scrape(server) for server in servers}
    # A new connection each, so that the deposits may land on any of business1's workers.
    for i in range(6):
        assert requests.post(f"{system.businesses[0].url}/deposit/metrics-{i}/1.00", headers=bearer(CLIENT_TOKEN),
                             timeout=5).status_code == 200
    after = {server.name: scrape(server) for server in servers}

    def moved(server, name, **labels):
        return metric_sum(after[server], name, **labels) - metric_sum(before[server], name, **labels)

    assert moved("business1", "bank_http_requests_total", route="deposit", status="200") == 6
    assert moved("business1", "bank_business_lock_cycles_total") == 6
    assert moved("business1", "bank_business_batch_size_sum") == 6
    assert moved("business2", "bank_http_requests_total", route="deposit") == 0
    assert moved("data", "bank_data_commits_total") == 6
    assert moved("data", "bank_data_journal_fsync_seconds_count") >= 6
    assert moved("data", "bank_http_requests_total", route="get_locks", status="200") == 6
    assert metric_sum(after["data"], "bank_data_accounts") >= 6

"""Inputs too large for gunicorn itself still get a JSON 4xx and change nothing."""
import requests

from tests.helpers import CLIENT_TOKEN, bearer

LONG = "9" * 10_000


def test_oversized_request_lines_and_headers_are_json_4xx(start_system):
    system = start_system()
    url = system.businesses[0].url
    headers = bearer(CLIENT_TOKEN)
    assert requests.post(f"{url}/deposit/alice/1.00", headers=headers, timeout=5).status_code == 200
    for response in (requests.post(f"{url}/deposit/alice/{LONG}", headers=headers, timeout=5),
                     requests.post(f"{url}/deposit/{'a' * 10_000}/1.00", headers=headers, timeout=5),
                     requests.post(f"{url}/deposit/alice/1.00", headers={**headers, "Idempotency-Key": LONG},
                                   timeout=5),
                     requests.get(f"{system.data.url}/getAmount/b1/{'a' * 10_000}", timeout=5)):
        assert 400 <= response.status_code < 500
        assert response.headers["Content-Type"] == "application/json"
        assert set(response.json()) == {"error", "message"}
    assert requests.get(f"{url}/balance/alice", headers=headers, timeout=5).json()["balance"] == "1.00"

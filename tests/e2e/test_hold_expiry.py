"""The bank's own expiry of holds, on real servers (three business servers, each with its batcher's expiry): a hold
expires once and on time across a kill -9 of the data server, whether the data server is back before the expiry
or down through it, and the bank goes on serving every account afterwards."""
import signal
import time

import requests

from shared.timestamps import unix_ms
from tests.helpers import CLIENT_TOKEN, OTHER_CLIENT_TOKEN, bearer, wait_until

PAYER, PAYEE = bearer(CLIENT_TOKEN), bearer(OTHER_CLIENT_TOKEN)
ON_TIME_MS = 2000       # the expiry looks every 0.2 s; a lock cycle on a loaded machine takes the rest


def call(method, url, headers, attempts=40):
    """The answer once a business server gives one (a 503 while the data server is down is tried again)."""
    for _ in range(attempts):
        try:
            answer = requests.request(method, url, headers=headers, timeout=5)
            if answer.status_code != 503:
                return answer
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise AssertionError(f"{method} {url}: no answer but 503 or none")


def test_a_hold_expires_once_and_on_time_across_a_kill_9_of_the_data_server(start_system):
    system = start_system()
    bank = [server.url for server in system.businesses]
    for account in ("payer-1", "payer-2"):
        assert call("POST", f"{bank[0]}/deposit/{account}/10.00", PAYER).status_code == 200
    assert call("POST", f"{bank[1]}/accounts/payee", PAYEE).status_code == 201
    # One due soon after the data server is back; one due while it is still down.
    back_before = call("POST", f"{bank[0]}/holds/payer-1/payee/3.00?expires_in=8", PAYER).json()
    down_through = call("POST", f"{bank[1]}/holds/payer-2/payee/4.00?expires_in=1", PAYER).json()

    system.data.signal(signal.SIGKILL)
    system.data.process.wait(10)
    # While it is down the bank says so, and applies nothing.
    down = requests.post(f"{bank[2]}/deposit/payer-1/1.00", headers=PAYER, timeout=10)
    assert (down.status_code, down.json()["error"]) == (503, "data_unavailable")
    wait_until(lambda: time.time() * 1000 > unix_ms(down_through["expires_at"]) + 500, 10, "the clock stood still")
    system.data.start()
    assert time.time() * 1000 < unix_ms(back_before["expires_at"]) - 1000, "the data server came back too late"

    for hold, account, bank_url in ((down_through, "payer-2", bank[2]), (back_before, "payer-1", bank[0])):
        wait_until(lambda url=f"{bank_url}/holds/{hold['id']}": call("GET", url, PAYER).json()["closed_at"], 15,
                   f"{hold['id']} never closed")
        closed = call("GET", f"{bank_url}/holds/{hold['id']}", PAYER).json()
        assert closed["state"] == "expired"
        closed_at, expires_at = unix_ms(closed["closed_at"]), unix_ms(hold["expires_at"])
        assert closed_at >= expires_at
        if hold is back_before:
            assert closed_at <= expires_at + ON_TIME_MS, f"closed {closed_at - expires_at} ms after its expiry"
        entries = call("GET", f"{bank_url}/history/{account}", PAYER).json()["entries"]
        assert [entry["kind"] for entry in reversed(entries)] == ["deposit", "hold", "hold_expiry"]
        assert entries[0]["balance"] == "10.00"
        seen = call("GET", f"{bank_url}/balance/{account}", PAYER).json()
        assert (seen["balance"], seen["available"]) == ("10.00", "10.00")
    # The bank serves every account after the fault: each written again, and the expired money spent.
    for account, server in (("payer-1", bank[1]), ("payer-2", bank[2])):
        assert call("POST", f"{server}/withdrawal/{account}/10.00", PAYER).json()["balance"] == "0.00"
    assert call("POST", f"{bank[0]}/deposit/payee/1.00", PAYEE).json()["balance"] == "1.00"

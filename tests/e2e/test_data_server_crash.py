"""kill -9 of the real data server, then a restart from its journal, loses no acknowledged write."""
import signal
import threading

import requests

from tests.e2e.conftest import data_server_env
from tests.helpers import DATA_TOKENS, bearer

WRITERS = 8
KILL_AFTER_ACKNOWLEDGED = 400


def test_kill_9_then_restart_loses_no_acknowledged_write(servers, tmp_path):
    data = servers("data", "data/gunicorn.conf.py", data_server_env(tmp_path / "bank.journal"), tmp_path).start()
    headers = bearer(DATA_TOKENS["b1"])
    acknowledged, attempted, tokens, errors = {}, {}, [], []
    acknowledged_total = [0]
    enough = threading.Event()
    mutex = threading.Lock()

    def write_until_killed(account):
        session = requests.Session()
        value = 0
        try:
            while True:
                granted = session.post(f"{data.url}/getLock/b1/{account}", headers=headers, timeout=5).json()
                tokens.append(granted["token"])
                value += 1
                attempted[account] = value
                response = session.post(f"{data.url}/setAmount/b1/{account}", headers=headers, timeout=5,
                                        json={"amount": f"{value}.00", "token": granted["token"], "unlock": True})
                if response.status_code != 200:
                    errors.append(response.text)
                    return
                acknowledged[account] = value
                with mutex:
                    acknowledged_total[0] += 1
                    if acknowledged_total[0] >= KILL_AFTER_ACKNOWLEDGED:
                        enough.set()
        except requests.RequestException:
            # The kill ends every writer: refused connections, or a reply cut off mid-way.
            return

    writers = [threading.Thread(target=write_until_killed, args=(f"acc{i}",)) for i in range(WRITERS)]
    for writer in writers:
        writer.start()
    assert enough.wait(60), f"the writers did not get going:\n{data.log()}"
    data.signal(signal.SIGKILL)
    data.process.wait(10)
    for writer in writers:
        writer.join(30)
    print(f"killed the data server with -9 after {acknowledged_total[0]} acknowledged writes")
    assert errors == []

    data.start()
    for i in range(WRITERS):
        account = f"acc{i}"
        recovered = requests.get(f"{data.url}/getAmount/b1/{account}", headers=headers, timeout=5).json()["amount"]
        # A write in flight at the kill may or may not have landed; every acknowledged one must have.
        assert recovered in (f"{acknowledged[account]}.00", f"{attempted[account]}.00"), (account, recovered)
    new_token = requests.post(f"{data.url}/getLock/b1/acc0", headers=headers, timeout=5).json()["token"]
    assert new_token > max(tokens)

"""A holder that goes stale: run on a business server's host, it takes a lease on an account straight from a data
server, says its token, and waits; told to go on (a line on stdin) after its lease has expired and others have
written the account, it writes a balance under the stale token and prints the status it got (409 if fenced).

python -m lab.stale_holder DATA_EDGE_URL BUSINESS TOKEN ACCOUNT TLS_DIR (make certs' files: the CA, and the
business's client certificate for the data edge)
"""
import sys

import requests

FORGED_AMOUNT = "999999.00"     # what the late write would set: the checker would see it if it were applied


def main(argv):
    data_url, business, token, account, tls = argv
    session = requests.Session()
    session.trust_env = False
    session.verify = f"{tls}/ca.pem"
    session.cert = (f"{tls}/business-{business}.pem", f"{tls}/business-{business}-key.pem")
    session.headers["Authorization"] = f"Bearer {token}"
    granted = session.post(f"{data_url}/getLocks/{business}", timeout=10,
                           json={"accounts": [account], "wait_ms": 5000}).json()
    lease = granted["locks"][0]["token"]
    print(lease, flush=True)
    sys.stdin.readline()
    late = session.post(f"{data_url}/commit/{business}", timeout=10, json={
        "writes": [{"account": account, "amount": FORGED_AMOUNT, "token": lease}], "unlock": True})
    print(late.status_code, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

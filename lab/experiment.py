"""One lab run, from inside the client's host: the bank started on its hosts, the check driving it, the nemesis.

python -m lab.experiment NETWORK_JSON SCHEDULE FOLDER: `python -m lab` runs it under `ip netns exec` in the client
host once the network is up (and takes the network down after). It writes FOLDER/run.json.
"""
import collections
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from client.check import BankCheck
from client.clients import CheckClients
from client.infra.bank_api import BankApi
from harness.broken_banks import BusinessLaunch
from harness.edge import Edge
from harness.etcd_cluster import EtcdCluster, Placement
from harness.processes import ROOT, Server, example_settings, stop_all
from harness.statements_cluster import Placement as StatementsPlacement
from harness.statements_cluster import StatementsCluster
from lab.faults import SCHEDULES
from lab.network import Network
from ops.certs import make_all
from shared.settings import load_client_settings

HOSTS = ("etcd1", "etcd2", "etcd3", "pg1", "pg2", "data1", "data2", "business1", "business2", "business3", "client")
DATA_PORT, BUSINESS_PORT = 8000, 8001      # gunicorn, on each host's loopback
PG_PORT, PATRONI_PORT = 5432, 8008          # PostgreSQL and Patroni's REST API, on each pg host's address
EDGE_PORT, DATA_EDGE_PORT = 8443, 8444      # nginx, on each host's address
FAULT_SECONDS = 8           # each fault's length: past LOCK_TTL (5 s), so a paused holder's leases expire
BETWEEN_SECONDS = 7         # healed, the bank recovers; the last 5 s of it are the next fault's rate before
TAIL_SECONDS = 8            # after the last fault's: the bank must serve every account steadily to the end
WARM_UP_SECONDS = 6
CLIENT_TIMEOUT = 3          # seconds per request: a server that does not answer in it is passed over
LEASE_GONE_WITHIN_SECONDS = 20  # a stale holder's lease has run out by then (LOCK_TTL + its share, granted late)
LEASE_POLL_SECONDS = 0.2


class StaleHolder:
    """lab/stale_holder.py running on a host: it has taken its lease and waits for write_late()."""

    def __init__(self, process, account):
        self.process, self.account = process, account
        self.token = int(process.stdout.readline())

    def write_late(self):
        """Send its write under the lease it took; {"account", "token", "status"} of the answer."""
        try:
            answer, _ = self.process.communicate("go\n", timeout=20)
            status = int(answer.split()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            self.process.kill()
            status = None
        return {"account": self.account, "token": self.token, "status": status}


class Lab:
    """The bank on the network's hosts, as the cluster shape runs it: three etcd members; two PostgreSQL members
    under Patroni, the statement store; two data servers and three business servers, each gunicorn on its host's
    loopback behind an nginx edge on its host's address; TLS on every hop, with certificates for every host from a
    CA of the run's own."""

    def __init__(self, network, folder, with_statements=True):
        self.network, self.folder = network, Path(folder)
        self.tls = self.folder / "tls"
        make_all(self.tls, [*network.addresses.values(), "127.0.0.1"])
        settings = example_settings()
        self.settings = settings
        self.cluster = EtcdCluster(self.folder / "etcd", {
            f"m{i}": Placement(network.addresses[f"etcd{i}"], 2379, 2380, network.wrapper(f"etcd{i}"))
            for i in (1, 2, 3)}, tls=self.tls)
        endpoints = self.cluster.endpoints
        # Without it (a schedule with no fault of its own), etcd keeps the history, up to the backlog limit.
        self.statements = StatementsCluster(endpoints, self.tls, {
            host: StatementsPlacement(network.addresses[host], PG_PORT, PATRONI_PORT, network.wrapper(host))
            for host in ("pg1", "pg2")}) if with_statements else None
        relaying = self.statements.data_settings() if self.statements else {}
        tokens = {f"b{i}": settings[f"DATA_TOKEN_B{i}"] for i in (1, 2, 3)}
        self.data, self.business, self.edges = {}, {}, {}
        for index, host in enumerate(("data1", "data2")):
            # Each data server asks a different member first.
            env = {**settings, "DATA_STORE": "etcd", "ETCD_ENDPOINTS": ",".join(endpoints[index:] + endpoints[:index]),
                   "DATA_TOKENS": ",".join(f"{b}:{t}" for b, t in tokens.items()), "LOG_LEVEL": "WARNING",
                   **self._files("ETCD_TLS", "data"), **relaying}
            self.data[host] = self._server(host, "data/gunicorn.conf.py", DATA_PORT, env)
        urls = [self.edges[host].data_url for host in self.data]
        self._tokens = tokens
        self.accounts = []          # the check's, once it runs
        self.late_writes = []       # what each stale holder's late write was answered
        for i in (1, 2, 3):
            env = {**settings, "BUSINESS_ID": f"b{i}", "DATA_TOKEN": tokens[f"b{i}"], "LOG_LEVEL": "WARNING",
                   "DATA_URLS": ",".join(urls[i % 2:] + urls[:i % 2]), **self._files("DATA_TLS", f"business-b{i}")}
            launch = BusinessLaunch(env, self.folder)
            self.business[f"business{i}"] = self._server(f"business{i}", "business/gunicorn.conf.py",
                                                         BUSINESS_PORT, launch.env, launch.app)

    def _files(self, prefix, name):
        """The TLS settings prefix_CA, _CERT and _KEY for make certs' certificate `name`."""
        return {f"{prefix}_CA": str(self.tls / "ca.pem"), f"{prefix}_CERT": str(self.tls / f"{name}.pem"),
                f"{prefix}_KEY": str(self.tls / f"{name}-key.pem")}

    def _server(self, host, config, port, env, app=None):
        """gunicorn on host's loopback, and the edge in front of it on host's address."""
        self.edges[host] = Edge({"EDGE_PORT": str(EDGE_PORT), "DATA_EDGE_PORT": str(DATA_EDGE_PORT),
                                 "EDGE_BUSINESS_UPSTREAMS": f"127.0.0.1:{BUSINESS_PORT}",
                                 "EDGE_DATA_UPSTREAMS": f"127.0.0.1:{DATA_PORT}", "EDGE_RUN_DIR": str(
                                     self.folder / f"nginx-{host}"), **self._files("EDGE_TLS", "edge")},
                                self.folder, self.network.addresses[host], self.network.wrapper(host),
                                name=f"edge-{host}")
        return Server(host, config, port, env, self.folder, wrapper=self.network.wrapper(host), app=app)

    def edge_healthy(self, host, timeout=30):
        """Wait for host's server to answer /health through its edge."""
        edge = self.edges[host]
        url = f"{edge.data_url}/health" if host in self.data else f"{edge.url}/health"
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(url, timeout=1, verify=str(self.tls / "ca.pem"),
                                cert=self._client_certificate()).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host} did not answer /health through its edge within {timeout} s")
            time.sleep(0.1)

    def _client_certificate(self):
        return str(self.tls / "business-b1.pem"), str(self.tls / "business-b1-key.pem")

    def member_host(self, member):
        return f"etcd{member[1:]}"

    def start(self):
        self.cluster.start()
        if self.statements:
            self.statements.start()
        servers = {**self.data, **self.business}
        for server in servers.values():
            server.start(wait=False)
        for host in servers:
            self.edges[host].start()
        for host in servers:
            self.edge_healthy(host)

    def stop(self):
        stop_all([*self.business.values(), *self.data.values(), *self.edges.values()])
        if self.statements:
            self.statements.stop()
        self.cluster.stop()

    def apis(self):
        return [BankApi(self.edges[host].url, self.settings["CLIENT_TOKEN"], CLIENT_TIMEOUT, str(self.tls / "ca.pem"))
                for host in self.business]

    def check_clients(self):
        """Whom the check runs as: the clients and operator of the lab's settings."""
        settings = load_client_settings(self.settings)
        return CheckClients.from_tokens(settings.client_tokens, settings.operator_token)

    def _operator_get(self, host, path):
        """What a data server answers an operator at path, through its edge; None if it does not answer."""
        token = self.settings["OPERATOR_TOKENS"].split(",")[0].split(":", 1)[1]
        try:
            return requests.get(f"{self.edges[host].data_url}{path}", headers={"Authorization": f"Bearer {token}"},
                                verify=str(self.tls / "ca.pem"), timeout=2)
        except requests.RequestException:
            return None

    def fencing_refusals(self):
        """Late writes the data servers refused (409 not_lock_holder) so far, from their metrics."""
        answers = [self._operator_get(host, "/metrics") for host in self.data]
        return sum(float(line.split()[-1]) for answer in answers if answer is not None
                   for line in answer.text.splitlines() if line.startswith("bank_data_fencing_refusals_total"))

    def lease_gone(self, account, token):
        """True once data1 answers that no lock on account is held under token; False if not within the bound."""
        deadline = time.monotonic() + LEASE_GONE_WITHIN_SECONDS
        while time.monotonic() < deadline:
            answer = self._operator_get("data1", "/dashboard/state")
            if answer is not None and answer.status_code == 200 and not any(
                    lease["account"] == account and lease["token"] == token for lease in answer.json()["leases"]):
                return True
            time.sleep(LEASE_POLL_SECONDS)
        return False

    def stale_holder(self, host, account):
        """A StaleHolder on host (as that host's business), holding a lease on account from data1."""
        business = f"b{host[-1]}"
        process = subprocess.Popen([*self.network.wrapper(host), sys.executable, "-m", "lab.stale_holder",
                                    self.edges["data1"].data_url, business, self._tokens[business], account,
                                    str(self.tls)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        return StaleHolder(process, account)


def run(network, schedule, folder):
    """Start the bank, drive it with the check while the schedule's faults come and go; return what was seen."""
    faults = SCHEDULES[schedule]
    lab = Lab(network, folder, with_statements=any(fault.on_statements for fault in faults))
    duration = WARM_UP_SECONDS + len(faults) * (FAULT_SECONDS + BETWEEN_SECONDS) + TAIL_SECONDS
    try:
        lab.start()
        check = BankCheck(lab.apis(), lab.check_clients(), workers=16, accounts=6, duration=duration, attempts=200,
                          retry_pause=0.1)
        lab.accounts = check.accounts
        box = {}
        driver = threading.Thread(target=lambda: box.update(report=check.run()))
        driver.start()
        windows = []
        time.sleep(WARM_UP_SECONDS)
        for fault in faults:
            refusals_before, late_before, started = lab.fencing_refusals(), len(lab.late_writes), time.monotonic()
            done, heal = fault.inject(lab)
            print(f"FAULT {fault.name}: {done}", flush=True)
            time.sleep(max(0.0, started + FAULT_SECONDS - time.monotonic()))
            healed = time.monotonic()
            heal()
            print(f"HEALED {fault.name}", flush=True)
            time.sleep(max(0.0, healed + BETWEEN_SECONDS - time.monotonic()))
            windows.append({"name": fault.name, "done": done, "start": started, "heal": healed,
                            "fencing_refusals": lab.fencing_refusals() - refusals_before,
                            "late_writes": lab.late_writes[late_before:]})
        driver.join(duration + 300)
        report = box["report"]
    finally:
        lab.stop()
    return {"schedule": schedule, "windows": windows, "violations": report.violations,
            "unknown": len(report.unknown), "sent": len(report.events),
            "operations": sum(1 for e in report.events if e.outcome == "ok"),
            "holds": dict(collections.Counter(hold["state"] if hold else "never placed"
                                              for hold in report.holds.values())),
            "accounts": sorted(report.written), "ended_at": report.ended_at,
            "events": [{"started_at": e.finished_at - e.seconds, "finished_at": e.finished_at, "outcome": e.outcome,
                        "kind": e.kind, "accounts": list(e.accounts), "failures": e.failures}
                       for e in report.events]}


def main(argv):
    description, schedule, folder = json.loads(argv[0]), argv[1], Path(argv[2])
    results = run(Network.from_description(description), schedule, folder)
    (folder / "run.json").write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

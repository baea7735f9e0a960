"""A real PostgreSQL cluster under Patroni (ops/patroni.py), started and killed whole: members on free loopback
ports for the tests, or one on each of the lab's simulated hosts; its state in etcd under a namespace of its own."""
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from harness.processes import free_port
from ops import patroni


@dataclass(frozen=True)
class Placement:
    address: str = "127.0.0.1"
    pg_port: int = field(default_factory=free_port)
    rest_port: int = field(default_factory=free_port)
    wrapper: tuple = ()         # what the member's command runs under (a simulated host's namespace)


class StatementsCluster:
    """Patroni members on etcd_urls, certificates from tls (make certs' folder); folder: the members' own, under
    /tmp so that the postgres user reaches it whoever runs the tests."""

    def __init__(self, etcd_urls, tls, placements=None, namespace=None):
        self.etcd_urls, self.tls = list(etcd_urls), Path(tls)
        self.placements = placements or {f"pg{i}": Placement() for i in (1, 2)}
        self.namespace = namespace or f"bank-pg-{secrets.token_hex(4)}"    # fresh keys each run (Patroni waits
        self.folder = Path(tempfile.mkdtemp(prefix="bank-pg-"))              # forever on a stale cluster's)
        os.chmod(self.folder, 0o711)
        self.rest_password = secrets.token_urlsafe(16)
        self.processes = {}
        self.members = {name: patroni.Member(name, self.folder / name, p.address, p.pg_port, p.rest_port)
                        for name, p in self.placements.items()}

    def data_settings(self):
        """What a data server needs to relay to this store: its Patroni members and the client certificate of
        PostgreSQL's user bank, from the same folder of make certs' files."""
        return {"STATEMENTS_PATRONI": ",".join(self.rest_urls), "STATEMENTS_TLS_CA": str(self.tls / "ca.pem"),
                "STATEMENTS_TLS_CERT": str(self.tls / "statements.pem"),
                "STATEMENTS_TLS_KEY": str(self.tls / "statements-key.pem")}

    @property
    def rest_urls(self):
        return [self.rest_url(name) for name in self.members]

    def rest_url(self, name):
        member = self.members[name]
        return f"https://{member.address}:{member.rest_port}"

    def start(self, timeout=90):
        for name in self.members:
            self.start_member(name)
        self.wait_ready(timeout)
        return self

    def start_member(self, name):
        """Start one member (again, on its data if it ran before)."""
        member = self.members[name]
        patroni.prepare(member, self.etcd_urls, self.tls, self.namespace, self.rest_password)
        with open(self.folder / f"{name}.log", "ab") as output:
            self.processes[name] = subprocess.Popen([*self.placements[name].wrapper, *patroni.command(member)],
                                                    cwd=member.folder, stdin=subprocess.DEVNULL, stdout=output,
                                                    stderr=subprocess.STDOUT, start_new_session=True)

    def cluster_view(self, timeout=2):
        """Patroni's /cluster as the first member that answers sees it, or {} if none does."""
        for url in self.rest_urls:
            try:
                return requests.get(f"{url}/cluster", timeout=timeout, verify=str(self.tls / "ca.pem")).json()
            except (requests.RequestException, ValueError):
                continue
        return {}

    def roles(self):
        """{member: role} for the members that are running PostgreSQL and, for standbys, streaming."""
        return {m["name"]: m["role"] for m in self.cluster_view().get("members", [])
                if m.get("state") in ("running", "streaming")}

    def primary(self):
        return next((name for name, role in self.roles().items() if role == "leader"), None)

    def wait_ready(self, timeout=90, members=None):
        """Until a primary leads and every running member (or those named) streams to it as synchronous standby."""
        deadline = time.monotonic() + timeout
        wanted = set(members or self.members)
        while True:
            for name, process in self.processes.items():
                if name in wanted and process.poll() is not None:
                    raise RuntimeError(f"patroni {name} exited: {self.log(name)}")
            roles = self.roles()
            if set(roles) >= wanted and "leader" in roles.values() and all(
                    role in ("leader", "sync_standby") for name, role in roles.items() if name in wanted):
                return roles
            if time.monotonic() > deadline:
                raise RuntimeError(f"the statement store was not ready within {timeout} s: {roles}; "
                                   + " | ".join(self.log(name, 800) for name in self.members))
            time.sleep(0.2)

    def log(self, name, tail=3000):
        try:
            return (self.folder / f"{name}.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def kill_postgres(self, name):
        """The member's PostgreSQL killed with -9, its Patroni left to notice."""
        patroni.kill_postgres(self.members[name])

    def kill_host(self, name):
        """A crash of the member's machine: Patroni and its PostgreSQL killed at once, nothing shut down."""
        patroni.kill(self.members[name], self.processes.get(name))

    def stop(self):
        """Every member killed, as a crash would (its data is thrown away with the folder, which is removed)."""
        for name in self.members:
            self.kill_host(name)
        shutil.rmtree(self.folder, ignore_errors=True)

"""A real etcd cluster, started and killed whole: on free loopback ports for the tests, or one member on each of
the lab's simulated hosts."""
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from harness.processes import free_port


@dataclass(frozen=True)
class Placement:
    """Where one member runs: its address, its ports, and what its command runs under (a host's namespace)."""
    address: str = "127.0.0.1"
    client_port: int = field(default_factory=free_port)
    peer_port: int = field(default_factory=free_port)
    wrapper: tuple = ()


class EtcdCluster:
    """Members of an etcd cluster, their data in a folder; placements: {name: Placement}, three on loopback if
    none are given. tls: a folder of make certs' files: the members then speak TLS to clients and peers and take
    only certificates from its CA, and the cluster's own calls show the data servers' certificate. quota_bytes: the
    database size at which etcd refuses writes (--quota-backend-bytes)."""

    def __init__(self, folder, placements=None, tls=None, quota_bytes=2 ** 30):
        self.folder = Path(folder)
        self.placements = placements or {f"m{i}": Placement() for i in (1, 2, 3)}
        self.names = list(self.placements)
        self.processes = {}
        self.tls = Path(tls) if tls else None
        self.quota_bytes = quota_bytes
        self._scheme = "https" if tls else "http"
        self._requests = {"verify": str(self.tls / "ca.pem"),
                          "cert": (str(self.tls / "data.pem"), str(self.tls / "data-key.pem"))} if tls else {}

    def client_url(self, name):
        return f"{self._scheme}://{self.placements[name].address}:{self.placements[name].client_port}"

    def peer_url(self, name):
        return f"{self._scheme}://{self.placements[name].address}:{self.placements[name].peer_port}"

    @property
    def endpoints(self):
        return [self.client_url(name) for name in self.names]

    def start(self, timeout=30):
        token = f"bank-{os.getpid()}-{self.placements[self.names[0]].client_port}"
        cluster = ",".join(f"{name}={self.peer_url(name)}" for name in self.names)
        for name in self.names:
            self.start_member(name, cluster, token)
        self.wait_healthy(timeout)
        return self

    def start_member(self, name, cluster=None, token=None):
        """Start one member; without cluster and token, restart it on its data."""
        data = self.folder / name
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        client, peer = self.client_url(name), self.peer_url(name)
        command = [*self.placements[name].wrapper, "etcd", "--name", name, "--data-dir", str(data),
                   "--listen-client-urls", client, "--advertise-client-urls", client,
                   "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                   "--logger", "zap", "--log-level", "error", "--log-outputs", str(self.folder / f"{name}.log"),
                   # A member back from a partition asks before it calls an election: no needless leader change.
                   "--pre-vote",
                   # A bank commit writes, records and releases up to 100 accounts in one transaction.
                   "--max-txn-ops", "4096",
                   # Old revisions are dropped and the database has a stated size, so the quota is never a surprise.
                   "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
                   "--quota-backend-bytes", str(self.quota_bytes)]
        if self.tls:
            cert, key = str(self.tls / f"etcd-{name}.pem"), str(self.tls / f"etcd-{name}-key.pem")
            ca = str(self.tls / "ca.pem")
            command += ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
                        "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca,
                        "--peer-client-cert-auth"]
        if cluster:
            command += ["--initial-cluster", cluster, "--initial-cluster-state", "new",
                        "--initial-cluster-token", token]
        with open(self.folder / f"{name}.out", "ab") as output:
            self.processes[name] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                                    stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout=30, names=None):
        deadline = time.monotonic() + timeout
        for name in names or self.names:
            while True:
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"etcd {name} exited: {(self.folder / f'{name}.out').read_text()[-2000:]}")
                try:
                    answer = requests.get(f"{self.client_url(name)}/health", timeout=1, **self._requests).json()
                    if answer.get("health") == "true":
                        break
                except (requests.RequestException, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd {name} was not healthy within {timeout} s")
                time.sleep(0.05)

    def leader(self):
        """The name of the member that leads now, as the members report it."""
        for name in self.names:
            try:
                status = requests.post(f"{self.client_url(name)}/v3/maintenance/status", json={}, timeout=2,
                                       **self._requests).json()
            except (requests.RequestException, ValueError):
                continue
            if status.get("leader") == status["header"]["member_id"]:
                return name
        raise RuntimeError("the cluster has no leader")

    def pids(self):
        """The members' processes (etcd itself: its command replaces any wrapper's)."""
        return [process.pid for process in self.processes.values() if process.poll() is None]

    def metrics(self, name):
        """One member's Prometheus samples: {sample line's name and labels: value}."""
        text = requests.get(f"{self.client_url(name)}/metrics", timeout=5, **self._requests).text
        samples = (line.rpartition(" ") for line in text.splitlines() if line and not line.startswith("#"))
        return {sample: float(value) for sample, _, value in samples}

    def signal(self, name, signum):
        os.killpg(self.processes[name].pid, signum)

    def kill(self, name):
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def stop(self):
        """SIGKILL, not SIGTERM: a leader hands over to members that are leaving too, for seconds."""
        for name in self.names:
            self.kill(name)

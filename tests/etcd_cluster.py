"""A real etcd cluster for the tests: members on free loopback ports, their data in a folder."""
import os
import signal
import subprocess
import time
from pathlib import Path

import requests

from harness.processes import free_port


class EtcdCluster:
    """Members of an etcd cluster on free loopback ports, their data in a folder; started and killed whole."""

    def __init__(self, folder, members=3):
        self.folder = Path(folder)
        self.names = [f"m{i}" for i in range(1, members + 1)]
        self.client_ports = {name: free_port() for name in self.names}
        self.peer_ports = {name: free_port() for name in self.names}
        self.processes = {}

    @property
    def endpoints(self):
        return [f"http://127.0.0.1:{self.client_ports[name]}" for name in self.names]

    def start(self, timeout=30):
        token = f"bank-{os.getpid()}-{self.client_ports[self.names[0]]}"
        cluster = ",".join(f"{name}=http://127.0.0.1:{self.peer_ports[name]}" for name in self.names)
        for name in self.names:
            self.start_member(name, cluster, token)
        self.wait_healthy(timeout)
        return self

    def start_member(self, name, cluster=None, token=None):
        """Start one member; without cluster and token, restart it on its data."""
        data = self.folder / name
        data.mkdir(mode=0o700, parents=True, exist_ok=True)
        client, peer = f"http://127.0.0.1:{self.client_ports[name]}", f"http://127.0.0.1:{self.peer_ports[name]}"
        command = ["etcd", "--name", name, "--data-dir", str(data), "--listen-client-urls", client,
                   "--advertise-client-urls", client, "--listen-peer-urls", peer,
                   "--initial-advertise-peer-urls", peer, "--logger", "zap", "--log-level", "error",
                   "--log-outputs", str(self.folder / f"{name}.log"),
                   # A bank commit writes, records and releases up to 100 accounts in one transaction.
                   "--max-txn-ops", "1024",
                   # Old revisions are dropped and the database has a stated size, so the quota is never a surprise.
                   "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
                   "--quota-backend-bytes", str(2 ** 30)]
        if cluster:
            command += ["--initial-cluster", cluster, "--initial-cluster-state", "new",
                        "--initial-cluster-token", token]
        with open(self.folder / f"{name}.out", "ab") as output:
            self.processes[name] = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output,
                                                    stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout=30):
        deadline = time.monotonic() + timeout
        for name, url in zip(self.names, self.endpoints):
            while True:
                if self.processes[name].poll() is not None:
                    raise RuntimeError(f"etcd {name} exited: {(self.folder / f'{name}.out').read_text()[-2000:]}")
                try:
                    if requests.get(f"{url}/health", timeout=1).json().get("health") == "true":
                        break
                except (requests.RequestException, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd {name} was not healthy within {timeout} s")
                time.sleep(0.05)

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

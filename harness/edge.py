"""The nginx edge (ops/edge.py) as a process of its own, started and always stopped by the tests."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.processes import ROOT, children_of


class Edge:
    """`python -m ops.edge` with env on top of this process's environment; nginx in a process group of its own."""

    def __init__(self, env, log_dir, address="127.0.0.1", wrapper=(), name="edge"):
        """address: where nginx listens; wrapper: what its command runs under (a lab host's namespace)."""
        self.env = {**env, "BIND_ADDRESS": address}
        self.address, self.wrapper = address, list(wrapper)
        self.port, self.data_port = int(env["EDGE_PORT"]), int(env["DATA_EDGE_PORT"])
        self.url, self.data_url = f"https://{address}:{self.port}", f"https://{address}:{self.data_port}"
        self.log_path = Path(log_dir) / f"{name}.log"
        self.process = None

    def start(self, timeout=20):
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([*self.wrapper, sys.executable, "-m", "ops.edge"], cwd=ROOT,
                                            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        for port in (self.port, self.data_port):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the edge exited with {self.process.returncode}:\n{self.log()}")
                try:
                    socket.create_connection((self.address, port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"the edge did not listen on {port} within {timeout} s:\n{self.log()}") from None
                    time.sleep(0.05)
        return self

    def worker_pids(self):
        """nginx's workers: its master's children (the master is this process, which exec'd nginx)."""
        return children_of(self.process.pid)

    def pids(self):
        """The master and its workers."""
        return [self.process.pid, *self.worker_pids()]

    def terminate(self):
        """Ask nginx for its graceful stop, without waiting for it."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGQUIT)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)

    def log(self, tail=4000):
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

"""Start the system's real gunicorn processes on free ports, and always stop them again (tests and benchmark)."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


# Ports handed out below the kernel's ephemeral range (32768-60999 here), so that no outgoing connection takes one
# between its choosing and its server's bind; each pytest-xdist worker (PYTEST_XDIST_WORKER gw0, gw1, ...) and each
# other process (by pid) counts through a block of its own.
PORT_BLOCKS = range(10_000, 32_000, 2_000)
_next_ports = {}


def free_port():
    """A port on 127.0.0.1 that nothing listens on, from this process's own block."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    block = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else os.getpid()
    start = PORT_BLOCKS[block % len(PORT_BLOCKS)]
    for _ in range(PORT_BLOCKS.step):
        port = start + _next_ports.get(start, 0)
        _next_ports[start] = (_next_ports.get(start, 0) + 1) % PORT_BLOCKS.step
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}-{start + PORT_BLOCKS.step - 1}")


def example_settings(root=ROOT):
    """.env.example's settings: the stack as `make run` starts it."""
    return {name: value for name, value in dotenv_values(Path(root) / ".env.example").items() if value is not None}


def proc_stat(pid):
    """The fields of /proc/PID/stat after the command name (state, ppid, …), or [] once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def children_of(pid):
    """The pids whose parent is pid."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = proc_stat(stat.parent.name)
        if fields and int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return sorted(children)


def _is_batcher(pid):
    try:
        return b"business.batcher" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def proc_status(pid):
    """/proc/PID/status as {name: value}, e.g. "Threads" and "VmRSS" ("35092 kB")."""
    return {name: value.strip() for name, _, value in
            (line.partition(":") for line in Path(f"/proc/{pid}/status").read_text().splitlines())}


class Server:
    """One gunicorn server (master and workers, in a process group of its own).

    address: where it listens; wrapper: what its command runs under (["ip", "netns", "exec", host] in the lab);
    app: the WSGI app to run, if not the one its config names (a broken bank: harness/broken_banks.py).
    """

    def __init__(self, name, config, port, env, log_dir, root=ROOT, address="127.0.0.1", wrapper=(), app=None):
        self.name, self.config, self.port, self.env, self.root = name, config, port, env, root
        self.app = app
        self.address, self.wrapper = address, list(wrapper)
        self.url = f"http://{address}:{port}"
        self.log_path = Path(log_dir) / f"{name}.log"
        self.process = None
        self._terminated = False

    def start(self, wait=True):
        log = open(self.log_path, "ab")
        self._terminated = False
        self.process = subprocess.Popen(
            [*self.wrapper, GUNICORN, "-c", self.config, "-b", f"{self.address}:{self.port}",
             *([self.app] if self.app else [])], cwd=self.root,
            env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer /health within {timeout} s:\n{self.log()}")

    def signal(self, signum):
        """Send signum to the master and all its workers."""
        os.killpg(self.process.pid, signum)

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self):
        """Ask it to stop (a paused one too), without waiting for it."""
        if self.process is not None and self.process.poll() is None and not self._terminated:
            self._terminated = True
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    def worker_pids(self):
        """The gunicorn workers: the master's children but a business server's batcher."""
        return [pid for pid in children_of(self.process.pid) if not _is_batcher(pid)]

    def batcher_pid(self):
        """A business server's batcher, or None (not started yet, or between two)."""
        return next((pid for pid in children_of(self.process.pid) if _is_batcher(pid)), None)

    def pids(self):
        """The master and its children: workers, and a business server's batcher."""
        return [self.process.pid, *children_of(self.process.pid)]

    def log(self, tail=4000):
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""


def stop_all(servers):
    """Stop every server at once: each one's graceful stop overlaps the others'."""
    for server in servers:
        server.terminate()
    for server in servers:
        server.stop()

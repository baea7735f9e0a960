"""The batcher's supervisor, in a business server's gunicorn master: it starts the batcher (business/batcher.py)
before the workers fork, starts it again whenever it dies, and stops it after the workers have stopped.

Nothing here imports prometheus_client at load time: the gunicorn conf file imports this module before the
metrics folder is chosen.
"""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

from business.infra.batcher_wire import SOCKET_ENV
from shared.gunicorn_hooks import left_by_processes_gone

RUN_FOLDER = os.path.join("var", "run")
START_TIMEOUT_SECONDS = 10          # for a batcher to accept connections
STOP_TIMEOUT_SECONDS = 5            # for it to go once its stdin closes
FIRST_RESTART_PAUSE_SECONDS = 0.2   # before starting a batcher that died; doubles up to MAX_RESTART_PAUSE_SECONDS
MAX_RESTART_PAUSE_SECONDS = 5
MAX_SOCKET_PATH_BYTES = 100         # AF_UNIX allows 107


class BatcherSupervisor:
    def __init__(self, log, path):
        self._log, self._path = log, path
        self._process = None
        self._stopping = False
        self._mutex = threading.Lock()

    def start(self):
        os.environ[SOCKET_ENV] = self._path
        with self._mutex:
            self._spawn()
        threading.Thread(target=self._watch, name="batcher-supervisor", daemon=True).start()

    def stop(self):
        with self._mutex:
            self._stopping = True
            process = self._process
        process.stdin.close()
        try:
            process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        _mark_dead(process.pid)
        if os.path.exists(self._path):
            os.unlink(self._path)

    def _spawn(self):
        try:
            self._process = subprocess.Popen([sys.executable, "-m", "business.batcher"], stdin=subprocess.PIPE)
        except OSError as error:
            if self._process is None:
                raise       # at the server's start: the server does not start
            # The dead one stays in _process: the watcher finds it gone at once and tries again after its pause.
            self._log.error("batcher not started: %s; the workers answer 503 batcher_unavailable", error)
            return
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _accepts(self._path):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._log.error("batcher (pid %s) did not start; the workers answer 503 batcher_unavailable",
                                self._process.pid)
                self._process.kill()    # one that hangs too: the watcher starts another
                return
            time.sleep(0.02)
        self._log.info("batcher (pid %s) listening at %s", self._process.pid, self._path)

    def _watch(self):
        pause = FIRST_RESTART_PAUSE_SECONDS
        while True:
            process = self._process
            started = time.monotonic()
            process.wait()
            if self._stopping:
                return
            self._log.error("batcher (pid %s) is gone; starting another", process.pid)
            _mark_dead(process.pid)
            # A batcher that ran a while did not die of its start: the next one after the shortest pause.
            pause = FIRST_RESTART_PAUSE_SECONDS if time.monotonic() - started > MAX_RESTART_PAUSE_SECONDS else pause
            time.sleep(pause)
            pause = min(pause * 2, MAX_RESTART_PAUSE_SECONDS)
            with self._mutex:
                if self._stopping:
                    return
                self._spawn()


def socket_path():
    """Where this master's batcher listens: var/run/ of the project, named by the master's pid."""
    return os.path.abspath(os.path.join(RUN_FOLDER, f"batcher-{os.getpid()}.sock"))


def _drop_sockets_of_masters_gone():
    """A master killed with its batcher (kill -9 of the group) leaves its socket file: drop those of dead pids."""
    if os.path.isdir(RUN_FOLDER):
        for path in left_by_processes_gone(RUN_FOLDER):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _accepts(path):
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _mark_dead(pid):
    """The dead batcher's live gauges stop counting, as a dead worker's do."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid)


_supervisor = None


def when_ready(server):
    """Gunicorn's hook, before the first workers fork: start the batcher (unless its socket path is too long for
    AF_UNIX, when each worker batches alone)."""
    global _supervisor
    _drop_sockets_of_masters_gone()
    path = socket_path()
    if len(path.encode()) > MAX_SOCKET_PATH_BYTES:
        server.log.error("batcher not started: %s is too long a socket path; each worker batches alone", path)
        return
    _supervisor = BatcherSupervisor(server.log, path)
    _supervisor.start()


def post_worker_init(worker):
    """Gunicorn's hook, in each worker once its app is loaded: a worker without a batcher expires holds itself."""
    expiry = worker.wsgi.extensions.get("bank.hold_expiry")
    if expiry is not None:
        expiry.start()


def on_exit(server):
    """Gunicorn's hook, after the workers stopped: stop the batcher."""
    if _supervisor is not None:
        _supervisor.stop()

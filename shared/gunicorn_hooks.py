"""What every gunicorn master of the system does: JSON for gunicorn's own error answers, prometheus-client's
multiprocess folder, and the worker hooks. A conf file calls prepare_server first and names the hooks."""
import json
import os
import shutil

from gunicorn import util

from shared.request_log import flush_all

METRICS_ROOT = os.path.join("var", "metrics")


def prepare_server(role):
    """Call it from the gunicorn conf file, before anything imports prometheus_client: the mode is chosen on import."""
    util.write_error = _write_json_error
    _prepare_metrics_folder(role)


def worker_exit(server, worker):
    """The worker's last summary of the requests it answered, so that a short run says what it did too."""
    flush_all()


def child_exit(server, worker):
    """A dead worker's live gauges stop counting (its counters stay in the sums)."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)


def _write_json_error(sock, status_int, reason, mesg):
    """Gunicorn answers some requests itself, before Flask (URI too long, header too large): in JSON too."""
    body = json.dumps({"error": reason.lower().replace(" ", "_"), "message": str(mesg or reason)}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def _prepare_metrics_folder(role):
    """A fresh folder for this master and the workers it forks; the folders of masters gone are dropped."""
    os.makedirs(METRICS_ROOT, exist_ok=True)
    for path in left_by_processes_gone(METRICS_ROOT):
        shutil.rmtree(path, ignore_errors=True)
    folder = os.path.abspath(os.path.join(METRICS_ROOT, f"{role}-{os.getpid()}"))
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def left_by_processes_gone(folder):
    """The paths in folder named after a process (`name-PID`, with any extension) that is no longer alive."""
    for name in os.listdir(folder):
        pid = name.partition(".")[0].rpartition("-")[2]
        if pid.isdigit() and not process_alive(int(pid)):
            yield os.path.join(folder, name)


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True

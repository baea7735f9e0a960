"""prometheus-client's multiprocess mode under gunicorn: one folder of metric files per server, under var/."""
import os
import shutil

METRICS_ROOT = os.path.join("var", "metrics")


def prepare_multiprocess_folder(role):
    """A fresh folder for this gunicorn master and the workers it forks; the folders of masters gone are dropped.

    Call it from the gunicorn conf file, before anything imports prometheus_client: the mode is chosen on import.
    """
    os.makedirs(METRICS_ROOT, exist_ok=True)
    for name in os.listdir(METRICS_ROOT):
        pid = name.rpartition("-")[2]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(os.path.join(METRICS_ROOT, name), ignore_errors=True)
    folder = os.path.abspath(os.path.join(METRICS_ROOT, f"{role}-{os.getpid()}"))
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder


def forget_worker(pid):
    """A dead worker's live gauges stop counting (its counters stay in the sums)."""
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(pid)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True

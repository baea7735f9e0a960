"""Gunicorn settings of a business server: stateless, so several workers, each with threads."""
from shared.gunicorn_errors import answer_errors_in_json
from shared.gunicorn_metrics import forget_worker, prepare_multiprocess_folder
from shared.request_log import flush_all
from shared.settings import exit_on_settings_error, load_business_settings, positive_int_setting

# Check the settings in the master so a bad value stops start-up with one line, before any worker forks.
exit_on_settings_error(load_business_settings)

answer_errors_in_json()
prepare_multiprocess_folder("business")

wsgi_app = "business.business_server:create_app()"
bind = ["127.0.0.1:8001"]
workers = exit_on_settings_error(lambda: positive_int_setting("BUSINESS_WORKERS", "2", maximum=64))
worker_class = "gthread"
threads = exit_on_settings_error(lambda: positive_int_setting("BUSINESS_THREADS", "16", maximum=256))
keepalive = 30
control_socket_disable = True     # gunicornc is not used; no socket written outside the project
timeout = 30
graceful_timeout = 10


def worker_exit(server, worker):
    """The worker's last summary of the requests it answered, so that a short run says what it did too."""
    flush_all()


def child_exit(server, worker):
    forget_worker(worker.pid)

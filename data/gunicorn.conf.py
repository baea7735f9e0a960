"""Gunicorn settings of the data server: one worker, so the in-memory store is one; threads for concurrency."""
from shared.gunicorn_hooks import child_exit, prepare_server, worker_exit  # noqa: F401 (hooks gunicorn calls)
from shared.settings import bind_setting, exit_on_settings_error, load_data_settings, positive_int_setting

# Check the settings in the master so a bad value stops start-up with one line, before any worker forks.
exit_on_settings_error(load_data_settings)

prepare_server("data")

wsgi_app = "data.data_server:create_app()"
bind = [exit_on_settings_error(lambda: bind_setting("DATA_PORT", "8000"))]    # BIND_ADDRESS:DATA_PORT
workers = 1                      # never more: a second worker would hold a second, different bank
worker_class = "gthread"
threads = exit_on_settings_error(lambda: positive_int_setting("DATA_THREADS", "64", maximum=512))
max_requests = 0                 # never recycle the worker: its memory is the bank
keepalive = 30
control_socket_disable = True     # gunicornc is not used; no socket written outside the project
timeout = 30
graceful_timeout = 10


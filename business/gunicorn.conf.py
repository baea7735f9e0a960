"""Gunicorn settings of a business server: stateless, so several workers, each with threads, and the batcher
they hand their operations to (started by when_ready, stopped by on_exit)."""
from business.batcher_supervisor import on_exit, post_worker_init, when_ready  # noqa: F401 (hooks gunicorn calls)
from shared.gunicorn_hooks import child_exit, prepare_server, worker_exit  # noqa: F401 (hooks gunicorn calls)
from shared.settings import bind_setting, exit_on_settings_error, load_business_settings, positive_int_setting

# Check the settings in the master so a bad value stops start-up with one line, before any worker forks.
exit_on_settings_error(load_business_settings)

prepare_server("business")

wsgi_app = "business.business_server:create_app()"
bind = [exit_on_settings_error(lambda: bind_setting("BUSINESS_PORT", "8001"))]    # BIND_ADDRESS:BUSINESS_PORT
workers = exit_on_settings_error(lambda: positive_int_setting("BUSINESS_WORKERS", "2", maximum=64))
worker_class = "gthread"
threads = exit_on_settings_error(lambda: positive_int_setting("BUSINESS_THREADS", "16", maximum=256))
keepalive = 30
control_socket_disable = True     # gunicornc is not used; no socket written outside the project
timeout = 30
graceful_timeout = 10


"""Gunicorn settings of the PostgreSQL peer: the business servers' shape (gthread, their workers and threads)."""
import os

wsgi_app = "bench.peers.postgres_bank:create_app()"
workers = int(os.environ.get("BUSINESS_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("BUSINESS_THREADS", "16"))
keepalive = 30
control_socket_disable = True
timeout = 30

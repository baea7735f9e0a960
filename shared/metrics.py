"""Prometheus metrics every server shares, and GET /metrics behind an operator's bearer token.

Under gunicorn, prometheus-client runs in multiprocess mode (shared/gunicorn_hooks.py sets its folder before
any worker starts), so a scrape sums every worker's counters; a server's own collectors add what it holds live.
"""
import os

from flask import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from shared.auth import bearer_auth, configure_tokens

OPERATOR_TOKENS_KEY = "BANK_OPERATOR_TOKENS"

REQUESTS = Counter("bank_http_requests_total", "HTTP requests answered", ["server", "route", "status"])
REQUEST_SECONDS = Histogram("bank_http_request_seconds", "Seconds to answer an HTTP request", ["server", "route"])


def observe_request(server_name, route, status, seconds):
    REQUESTS.labels(server_name, route, str(status)).inc()
    REQUEST_SECONDS.labels(server_name, route).observe(seconds)


def register_metrics_route(app, operator_tokens, live_collectors=()):
    """GET /metrics in Prometheus's text format, for operators only; live_collectors report state at scrape."""
    configure_tokens(app, operator_tokens, OPERATOR_TOKENS_KEY)
    operator = bearer_auth(OPERATOR_TOKENS_KEY)
    live = CollectorRegistry(auto_describe=False)       # read only when scraped, never at start-up
    for collector in live_collectors:
        live.register(collector)

    @app.get("/metrics")
    @operator.login_required
    def metrics():
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            workers = CollectorRegistry()
            multiprocess.MultiProcessCollector(workers)
        else:
            workers = REGISTRY
        return Response(generate_latest(workers) + generate_latest(live), mimetype=CONTENT_TYPE_LATEST)

    return operator

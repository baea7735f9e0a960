"""The edge: ops/nginx.conf.template rendered from the settings into var/nginx/nginx.conf, then nginx in the
foreground (honcho runs it as `python -m ops.edge`). A bad setting or certificate stops it with one line."""
import json
import os
import shutil
import sys
from pathlib import Path

from shared.settings import exit_on_settings_error, load_edge_settings

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
# nginx's own answers, in the servers' JSON: status -> (code, message, the status it is answered with).
NGINX_ANSWERS = {
    400: ("bad_request", "the request could not be read", 400),
    404: ("not_found", "no such route", 404),
    413: ("request_entity_too_large", "the body is larger than the edge accepts", 413),
    414: ("request_uri_too_long", "the request line is longer than the edge accepts", 414),
    429: ("rate_limited", "too many requests from this client: slow down and try again", 429),
    494: ("request_header_too_large", "the request's headers are larger than the edge accepts", 431),
    495: ("certificate_refused", "the client certificate is not one the bank's CA issued, or it has expired", 400),
    496: ("certificate_required", "this edge needs a client certificate from the bank's CA", 400),
    497: ("plain_http_to_https", "this port speaks HTTPS only; nothing was applied", 400),
    500: ("internal_error", "the edge failed; the request may be retried", 500),
    502: ("upstream_unavailable", "no server behind the edge answered: a write's outcome is unknown, and sending "
                                  "it again is safe only under the same Idempotency-Key", 502),
    503: ("upstream_unavailable", "no server behind the edge is available; try again", 503),
    504: ("upstream_timeout", "the server behind the edge did not answer in time; the outcome is unknown", 504),
}
RETRY_AFTER = {429: 1, 502: 1, 503: 1}


def error_pages():
    """(error_page directives, the named locations they send to): each of nginx's own answers in JSON."""
    directives, locations = [], []
    for status, (code, message, answered) in NGINX_ANSWERS.items():
        body = json.dumps({"error": code, "message": message}).replace("'", "\\'")
        directives.append(f"error_page {status} = @answer_{status};")
        header = f"add_header Retry-After {RETRY_AFTER[status]} always; " if status in RETRY_AFTER else ""
        locations.append(f"        location @answer_{status} {{ {header}default_type application/json; "
                         f"return {answered} '{body}'; }}")
    return " ".join(directives), "\n".join(locations)


def render(settings, run_dir):
    values = {
        "RUN_DIR": str(run_dir), "MAX_BODY_BYTES": str(settings.max_body_bytes),
        "EDGE_ADDRESS": settings.address, "EDGE_PORT": str(settings.port), "DATA_EDGE_PORT": str(settings.data_port),
        "EDGE_RATE_LIMIT": str(settings.rate_limit), "EDGE_RATE_BURST": str(settings.rate_burst),
        "EDGE_UPSTREAM_TIMEOUT": str(settings.upstream_timeout_seconds),
        "EDGE_TLS_CERT": str(Path(settings.tls.cert).resolve()),
        "EDGE_TLS_KEY": str(Path(settings.tls.key).resolve()),
        "TLS_CA": str(Path(settings.tls.ca).resolve()),
        "BUSINESS_UPSTREAMS": "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;"
                                        for u in settings.business_upstreams),
        "DATA_UPSTREAMS": "\n".join(f"        server {u} max_fails=1 fail_timeout=5s;"
                                    for u in settings.data_upstreams),
    }
    values["ERROR_PAGES"], values["ERROR_LOCATIONS"] = error_pages()
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    return text


def main():
    settings = exit_on_settings_error(load_edge_settings)
    if shutil.which("nginx") is None:
        print("configuration error: nginx is not installed (Debian package nginx; make run-cluster installs it)",
              file=sys.stderr)
        return 2
    run_dir = Path(settings.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "nginx.conf"
    config.write_text(render(settings, run_dir))
    os.execvp("nginx", ["nginx", "-p", str(run_dir), "-c", str(config), "-e", "stderr"])


if __name__ == "__main__":
    sys.exit(main())

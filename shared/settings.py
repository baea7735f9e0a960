"""Settings of each role, read from the environment and `.env` into frozen, validated objects."""
import ipaddress
import os
import ssl
import sys
from dataclasses import dataclass

from dotenv import find_dotenv, load_dotenv

from shared.money import InvalidAmount, parse_cents
from shared.validation import is_account_id


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class DataSettings:
    tokens: dict          # bearer token -> business id
    operator_tokens: dict  # bearer token -> operator, for /metrics and the dashboard
    lock_ttl: float       # seconds a lease lives without renewal
    journal_path: str     # empty: memory only
    fsync: str            # always | everysec | no
    operation_limit: int  # Idempotency-Key records held at most: a memory bound, never an early eviction
    operation_retention: float  # seconds an Idempotency-Key record is kept
    retry_record_limit: int     # records of writes without a key, held at most
    retry_record_retention: float  # seconds those are kept, for a commit's own retry
    compact_min_bytes: int      # journal size below which it is never compacted
    history_retention: float | None  # seconds an account's history entry is kept; None: for good
    lock_waiters: int     # requests that may wait at once for a held account (each holds a server thread)
    store: str            # embedded (the store in this process, and its journal) | etcd
    etcd_endpoints: tuple  # client URLs of the etcd members, for DATA_STORE=etcd
    etcd_prefix: str      # the bank's keys in etcd start with it
    etcd_timeout: float   # seconds for each call to etcd before the next member is tried
    etcd_tls: object      # TlsFiles for https:// members (the data server's own certificate), or None
    statements_patroni: tuple  # the statement store's Patroni REST URLs (DATA_STORE=etcd); empty: none
    statements_tls: object  # TlsFiles: the CA, and the client certificate of PostgreSQL's user bank; or None
    history_backlog_limit: int  # history entries etcd holds at most, waiting for the relay: past it, 503
    open_holds_limit: int       # holds held at once in the whole bank at most: past it, 503 holds_full
    hold_retention: float       # seconds a closed hold stays readable by its id (its entries are kept for good)
    max_body_bytes: int
    log_level: str
    log_summary_seconds: float


@dataclass(frozen=True)
class BusinessSettings:
    business_id: str
    data_urls: tuple      # data servers, tried in turn when one does not take the connection
    data_token: str
    data_tls: object      # TlsFiles for https:// data URLs (this server's client certificate), or None
    client_tokens: dict   # bearer token -> client name
    operator_tokens: dict  # bearer token -> operator, for /metrics
    lock_wait: float      # seconds an operation waits for a busy account before 503
    data_timeout: float   # seconds for each call to the data server
    max_amount_cents: int
    queue_limit: int      # operations waiting on one account in one queue (a business server's batcher)
    batch_limit: int      # operations applied in one lock cycle
    holds_per_account: int  # holds one account may have held at once: past it, 422 too_many_holds
    hold_default_seconds: int  # a hold's life when its request names none
    hold_max_seconds: int  # the longest life a hold may ask for
    max_body_bytes: int
    log_level: str
    log_summary_seconds: float


@dataclass(frozen=True)
class ClientSettings:
    business_urls: tuple
    token: str
    client_tokens: dict   # client name -> its (first) token, from CLIENT_TOKENS: whom the check runs as
    operator_token: str   # an operator's token ("": none), for the check's reading of statements
    timeout: float
    tls_ca: str           # the CA an https:// edge's certificate must chain to ("": the system's)


@dataclass(frozen=True)
class TlsFiles:
    """A CA to verify the other side with, and this side's certificate and key (both "" for none)."""
    ca: str
    cert: str = ""
    key: str = ""


@dataclass(frozen=True)
class EdgeSettings:
    address: str
    port: int             # HTTPS for clients, in front of the business servers
    data_port: int        # HTTPS with client certificates, in front of the data servers
    rate_limit: int       # requests per second per client token
    rate_burst: int
    tls: TlsFiles         # the bank's CA (for client certificates) and the edge's certificate
    business_upstreams: tuple
    data_upstreams: tuple
    max_body_bytes: int
    run_dir: str          # nginx's rendered configuration, pid file and temporary files
    upstream_timeout_seconds: int   # the longest a client waits for a business server's answer: then 504


def load_data_settings(environ=None):
    env = _environment(environ)
    etcd_endpoints = _urls(env, "ETCD_ENDPOINTS", "http://127.0.0.1:2379")
    statements_patroni = _urls(env, "STATEMENTS_PATRONI", "") if env.get("STATEMENTS_PATRONI", "").strip() else ()
    if any(not url.startswith("https://") for url in statements_patroni):
        raise SettingsError("STATEMENTS_PATRONI: the statement store is reached over https:// only")
    if statements_patroni and _store(env) != "etcd":
        raise SettingsError("STATEMENTS_PATRONI: only the etcd tier relays to a statement store (DATA_STORE=etcd)")
    return DataSettings(
        tokens=_token_map(env, "DATA_TOKENS"),
        operator_tokens=_token_map(env, "OPERATOR_TOKENS"),
        lock_ttl=_seconds(env, "LOCK_TTL", "5"),
        journal_path=env.get("DATA_JOURNAL", "").strip(),
        fsync=_choice(env, "DATA_FSYNC", "always", ("always", "everysec", "no")),
        operation_limit=_positive_int(env, "DATA_OPERATION_LIMIT", "1000000"),
        operation_retention=_positive_int(env, "DATA_OPERATION_RETENTION", "86400"),
        retry_record_limit=_positive_int(env, "DATA_RETRY_RECORD_LIMIT", "500000"),
        retry_record_retention=_positive_int(env, "DATA_RETRY_RECORD_RETENTION", "60"),
        compact_min_bytes=_positive_int(env, "DATA_COMPACT_MIN_BYTES", "16777216"),
        history_retention=_seconds_or_for_good(env, "DATA_HISTORY_RETENTION"),
        lock_waiters=_positive_int(env, "DATA_LOCK_WAITERS", "48"),
        store=_store(env),
        etcd_endpoints=etcd_endpoints,
        etcd_prefix=env.get("ETCD_PREFIX", "bank/").strip() or "bank/",
        etcd_timeout=_seconds(env, "ETCD_TIMEOUT", "1"),
        etcd_tls=_tls_if_https(env, etcd_endpoints, "ETCD_TLS"),
        statements_patroni=statements_patroni,
        statements_tls=_tls_files(env, "STATEMENTS_TLS") if statements_patroni else None,
        history_backlog_limit=_positive_int(env, "DATA_HISTORY_BACKLOG_LIMIT", "100000"),
        open_holds_limit=_positive_int(env, "DATA_OPEN_HOLDS_LIMIT", "100000"),
        hold_retention=_positive_int(env, "DATA_HOLD_RETENTION", "86400"),
        max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", "1048576"),
        log_level=_choice(env, "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_summary_seconds=_seconds(env, "LOG_SUMMARY_SECONDS", "10"),
    )


def load_business_settings(environ=None):
    env = _environment(environ)
    business_id = _required(env, "BUSINESS_ID")
    if not is_account_id(business_id):
        raise SettingsError(f"BUSINESS_ID: must be 1 to 64 of A-Z a-z 0-9 _ -, got {business_id!r}")
    data_urls = _urls(env, "DATA_URLS", "http://127.0.0.1:8000")
    client_tokens, operator_tokens = _token_map(env, "CLIENT_TOKENS"), _token_map(env, "OPERATOR_TOKENS")
    shared = sorted(client_tokens[token] for token in client_tokens.keys() & operator_tokens.keys())
    if shared:
        # A token is a client (who owns accounts) or an operator (who reads them all), never both.
        raise SettingsError(f"CLIENT_TOKENS: {', '.join(shared)} share a token with OPERATOR_TOKENS")
    both = sorted(set(client_tokens.values()) & set(operator_tokens.values()))
    if both:
        # A keyed request's operation id is "name:key": one name must not stand for a client and an operator.
        raise SettingsError(f"CLIENT_TOKENS: {', '.join(both)} also named in OPERATOR_TOKENS")
    hold_default_seconds = _positive_int(env, "HOLD_DEFAULT_SECONDS", "3600")
    hold_max_seconds = _positive_int(env, "HOLD_MAX_SECONDS", "2592000")
    if hold_default_seconds > hold_max_seconds:
        raise SettingsError(f"HOLD_DEFAULT_SECONDS: {hold_default_seconds} is past HOLD_MAX_SECONDS "
                            f"({hold_max_seconds})")
    return BusinessSettings(
        business_id=business_id,
        data_urls=data_urls,
        data_token=_required(env, "DATA_TOKEN"),
        data_tls=_tls_if_https(env, data_urls, "DATA_TLS"),
        client_tokens=client_tokens,
        operator_tokens=operator_tokens,
        lock_wait=_seconds(env, "LOCK_WAIT", "2"),
        data_timeout=_seconds(env, "DATA_TIMEOUT", "1"),
        max_amount_cents=_amount(env, "MAX_AMOUNT", "1000000000.00"),
        queue_limit=_positive_int(env, "QUEUE_LIMIT", "256"),
        batch_limit=_positive_int(env, "BATCH_LIMIT", "64", maximum=100),
        holds_per_account=_positive_int(env, "HOLDS_PER_ACCOUNT", "20", maximum=100),
        hold_default_seconds=hold_default_seconds,
        hold_max_seconds=hold_max_seconds,
        max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", "65536"),
        log_level=_choice(env, "LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        log_summary_seconds=_seconds(env, "LOG_SUMMARY_SECONDS", "10"),
    )


def load_client_settings(environ=None):
    env = _environment(environ)
    urls = _urls(env, "BUSINESS_URLS", "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003")
    ca = env.get("CLIENT_TLS_CA", "").strip()
    if ca:
        _readable_ca(ca, "CLIENT_TLS_CA")
    named = client_tokens_by_name(env["CLIENT_TOKENS"]) if env.get("CLIENT_TOKENS", "").strip() else {}
    return ClientSettings(business_urls=urls, token=env.get("CLIENT_TOKEN", ""), client_tokens=named,
                          operator_token=env.get("OPERATOR_TOKEN", "").strip(),
                          timeout=_seconds(env, "CLIENT_TIMEOUT", "5"), tls_ca=ca)


def load_edge_settings(environ=None):
    env = _environment(environ)
    business_ports = [env.get(f"BUSINESS{i}_PORT", str(8000 + i)) for i in (1, 2, 3)]
    return EdgeSettings(
        address=_address(env),
        port=_positive_int(env, "EDGE_PORT", "8443", maximum=65535),
        data_port=_positive_int(env, "DATA_EDGE_PORT", "8444", maximum=65535),
        rate_limit=_positive_int(env, "EDGE_RATE_LIMIT", "500"),
        rate_burst=_positive_int(env, "EDGE_RATE_BURST", "1000"),
        tls=_tls_files(env, "EDGE_TLS"),
        business_upstreams=_upstreams(env, "EDGE_BUSINESS_UPSTREAMS",
                                      ",".join(f"127.0.0.1:{port}" for port in business_ports)),
        data_upstreams=_upstreams(env, "EDGE_DATA_UPSTREAMS", f"127.0.0.1:{env.get('DATA_PORT', '8000')}"),
        max_body_bytes=_positive_int(env, "MAX_BODY_BYTES", "65536"),
        run_dir=env.get("EDGE_RUN_DIR", "").strip() or os.path.join("var", "nginx"),
        upstream_timeout_seconds=_positive_int(env, "EDGE_UPSTREAM_TIMEOUT", "10", maximum=300),
    )


def exit_on_settings_error(loader):
    """Run a settings loader at start-up; on a bad value print one line naming it and exit 2."""
    try:
        return loader()
    except SettingsError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def _environment(environ):
    if environ is not None:
        return environ
    # A real environment variable wins over the same name in .env.
    load_dotenv(find_dotenv(usecwd=True), override=False)
    return os.environ


def _required(env, name):
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name}: is required and not set (see .env.example)")
    return value


def names_by_token(text, name):
    """{token: name} of "name:token,name:token" as the setting (or option) called name holds it; SettingsError if
    an entry is malformed."""
    return _token_map({name: text}, name)


def client_tokens_by_name(text, name="CLIENT_TOKENS"):
    """{client name: its first token} of "name:token,name:token"; SettingsError if an entry is malformed."""
    named = {}
    for token, client in names_by_token(text, name).items():
        named.setdefault(client, token)
    return named


def _token_map(env, name):
    """Parse "owner:token,owner:token" into {token: owner}."""
    tokens = {}
    for entry in _required(env, name).split(","):
        owner, sep, token = entry.strip().partition(":")
        if not sep or not owner or not token:
            raise SettingsError(f"{name}: each entry must be owner:token, got an entry without both parts")
        if not is_account_id(owner):
            raise SettingsError(f"{name}: owner {owner!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
        if len(token) < 8:
            raise SettingsError(f"{name}: the token of {owner!r} is shorter than 8 characters")
        if token in tokens:
            raise SettingsError(f"{name}: {owner!r} and {tokens[token]!r} share one token")
        tokens[token] = owner
    return tokens


def _seconds(env, name, default):
    text = env.get(name, default).strip()
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name}: must be a number of seconds, got {text!r}") from None
    if not 0 < value <= 3600:
        raise SettingsError(f"{name}: must be more than 0 and at most 3600 seconds, got {text!r}")
    return value


def bind_setting(port_name, default_port):
    """BIND_ADDRESS:port for a gunicorn configuration file: where the server listens (its host's address)."""
    env = _environment(None)
    return f"{_address(env)}:{_positive_int(env, port_name, default_port, maximum=65535)}"


def _address(env):
    address = env.get("BIND_ADDRESS", "127.0.0.1").strip()
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SettingsError(f"BIND_ADDRESS: must be an IP address such as 127.0.0.1, got {address!r}") from None
    return address


def _upstreams(env, name, default):
    """host:port pairs, comma separated."""
    upstreams = tuple(item.strip() for item in env.get(name, default).split(",") if item.strip())
    for item in upstreams:
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c in item for c in " ;{}#'\""):
            raise SettingsError(f"{name}: each entry must be host:port, got {item!r}")
    if not upstreams:
        raise SettingsError(f"{name}: at least one host:port is needed")
    return upstreams


def _tls_if_https(env, urls, prefix):
    """The TlsFiles of {prefix}_CA/_CERT/_KEY when urls name https:// servers; None for plain http."""
    return _tls_files(env, prefix) if any(url.startswith("https://") for url in urls) else None


def _tls_files(env, prefix):
    """{prefix}_CA, {prefix}_CERT and {prefix}_KEY, each readable, the key the certificate's own."""
    ca, cert, key = (env.get(f"{prefix}_{part}", "").strip() for part in ("CA", "CERT", "KEY"))
    _readable_ca(ca, f"{prefix}_CA")
    for path, name in ((cert, f"{prefix}_CERT"), (key, f"{prefix}_KEY")):
        if not path or not os.access(path, os.R_OK):
            raise SettingsError(f"{name}: {path or 'not set'}: not a readable file (make certs writes var/tls/)")
    try:
        ssl.create_default_context().load_cert_chain(cert, key)
    except ssl.SSLError as error:
        raise SettingsError(f"{prefix}_KEY: {key} is not the key of {cert} ({error.reason})") from None
    return TlsFiles(ca, cert, key)


def _readable_ca(path, name):
    if not path or not os.access(path, os.R_OK):
        raise SettingsError(f"{name}: {path or 'not set'}: not a readable file (make certs writes var/tls/ca.pem)")
    try:
        ssl.create_default_context().load_verify_locations(path)
    except ssl.SSLError as error:
        raise SettingsError(f"{name}: {path} holds no certificate ({error.reason})") from None


def positive_int_setting(name, default, maximum=1_000_000_000):
    """One whole-number setting, for the gunicorn configuration files."""
    return _positive_int(_environment(None), name, default, maximum)


def _seconds_or_for_good(env, name):
    """Whole seconds, or None (empty or 0): for good."""
    text = env.get(name, "").strip()
    return None if text in ("", "0") else _positive_int(env, name, text)


def _positive_int(env, name, default, maximum=1_000_000_000):
    text = env.get(name, default).strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= maximum:
        raise SettingsError(f"{name}: must be a whole number from 1 to {maximum}, got {text!r}")
    return int(text)


def _store(env):
    if env.get("DATA_STORE", "").strip() == "memory":
        raise SettingsError("DATA_STORE: memory is now called embedded; set DATA_STORE=embedded")
    return _choice(env, "DATA_STORE", "embedded", ("embedded", "etcd"))


def _choice(env, name, default, choices):
    text = env.get(name, default).strip()
    if text not in choices:
        raise SettingsError(f"{name}: must be one of {', '.join(choices)}, got {text!r}")
    return text


def _amount(env, name, default):
    text = env.get(name, default).strip()
    try:
        cents = parse_cents(text)
    except InvalidAmount:
        raise SettingsError(f"{name}: must be a decimal amount such as 1000.00, got {text!r}") from None
    if cents < 1:
        raise SettingsError(f"{name}: must be more than 0")
    return cents


def _urls(env, name, default):
    urls = tuple(url.strip().rstrip("/") for url in env.get(name, default).split(",") if url.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise SettingsError(f"{name}: {url!r} is not an http:// or https:// URL")
    if not urls:
        raise SettingsError(f"{name}: at least one URL is needed")
    return urls

import pytest

from shared.settings import (
    SettingsError,
    bind_setting,
    client_tokens_by_name,
    exit_on_settings_error,
    load_business_settings,
    load_client_settings,
    load_data_settings,
)
from tests.helpers import business_environ as business_environ_for
from tests.helpers import data_environ


def test_data_settings_read_tokens_and_defaults():
    settings = load_data_settings(data_environ())
    assert settings.tokens["test-data-token-b1"] == "b1"
    assert settings.lock_ttl == 5 and settings.fsync == "always"


def test_the_store_is_embedded_unless_etcd_is_named_and_the_old_name_memory_is_refused_naming_the_new_one():
    assert load_data_settings(data_environ()).store == "embedded"
    assert load_data_settings(data_environ(DATA_STORE="etcd")).store == "etcd"
    with pytest.raises(SettingsError, match="^DATA_STORE: memory is now called embedded; set DATA_STORE=embedded$"):
        load_data_settings(data_environ(DATA_STORE="memory"))


def test_history_is_kept_for_good_unless_a_retention_is_set():
    assert load_data_settings(data_environ()).history_retention is None
    assert load_data_settings(data_environ(DATA_HISTORY_RETENTION="0")).history_retention is None
    assert load_data_settings(data_environ(DATA_HISTORY_RETENTION="3600")).history_retention == 3600


def test_a_statement_store_is_the_etcd_tiers_own_and_needs_its_client_certificate(tmp_path):
    with pytest.raises(SettingsError, match="^STATEMENTS_PATRONI: only the etcd tier"):
        load_data_settings(data_environ(STATEMENTS_PATRONI="https://127.0.0.1:8008"))
    with pytest.raises(SettingsError, match="^STATEMENTS_TLS_CA:"):
        load_data_settings(data_environ(DATA_STORE="etcd", STATEMENTS_PATRONI="https://127.0.0.1:8008"))
    assert load_data_settings(data_environ(DATA_STORE="etcd")).statements_patroni == ()


def test_settings_are_frozen():
    settings = load_data_settings(data_environ())
    with pytest.raises(AttributeError):
        settings.lock_ttl = 1


@pytest.mark.parametrize("name, value", [
    ("DATA_TOKENS", ""), ("DATA_TOKENS", "b1"), ("DATA_TOKENS", "b1:short"), ("DATA_TOKENS", "b 1:long-enough-token"),
    ("DATA_TOKENS", "b1:same-token-x,b2:same-token-x"),
    ("LOCK_TTL", "abc"), ("LOCK_TTL", "0"), ("LOCK_TTL", "-1"), ("LOCK_TTL", "nan"),
    ("DATA_FSYNC", "sometimes"), ("DATA_OPERATION_LIMIT", "0"), ("DATA_OPERATION_LIMIT", "1.5"),
    ("OPERATOR_TOKENS", ""), ("OPERATOR_TOKENS", "ops:short"), ("DATA_COMPACT_MIN_BYTES", "0"),
    ("DATA_RETRY_RECORD_RETENTION", "x"), ("LOG_SUMMARY_SECONDS", "0"), ("DATA_HISTORY_RETENTION", "-5"),
    ("DATA_HISTORY_RETENTION", "a day"), ("DATA_HISTORY_BACKLOG_LIMIT", "0"), ("STATEMENTS_PATRONI", "ftp://x"),
    ("STATEMENTS_PATRONI", "http://127.0.0.1:8008"), ("DATA_OPEN_HOLDS_LIMIT", "0"), ("DATA_HOLD_RETENTION", "-1"),
])
def test_a_bad_data_setting_names_its_variable(name, value):
    with pytest.raises(SettingsError, match=f"^{name}:"):
        load_data_settings(data_environ(**{name: value}))


@pytest.mark.parametrize("name, value", [
    ("BUSINESS_ID", ""), ("BUSINESS_ID", "b/1"), ("DATA_TOKEN", ""), ("DATA_URLS", "ftp://x"), ("DATA_URLS", " , "),
    ("MAX_AMOUNT", "1e9"), ("MAX_AMOUNT", "0"), ("LOCK_WAIT", "x"), ("QUEUE_LIMIT", "-3"),
    ("HOLDS_PER_ACCOUNT", "101"), ("HOLDS_PER_ACCOUNT", "0"), ("HOLD_MAX_SECONDS", "1 day"),
    ("HOLD_DEFAULT_SECONDS", "2592001"),
])
def test_a_bad_business_setting_names_its_variable(name, value):
    with pytest.raises(SettingsError, match=f"^{name}:"):
        load_business_settings(business_environ_for("b1", "http://127.0.0.1:8000", **{name: value}))


def test_business_settings_convert_max_amount_to_cents():
    settings = load_business_settings(business_environ_for("b1", "http://127.0.0.1:8000", MAX_AMOUNT="12.34"))
    assert settings.max_amount_cents == 1234


def test_client_settings_split_urls():
    settings = load_client_settings({"BUSINESS_URLS": "http://a:1/, http://b:2", "CLIENT_TOKEN": "t"})
    assert settings.business_urls == ("http://a:1", "http://b:2")


def test_start_up_stops_with_one_line_naming_the_variable(capsys):
    with pytest.raises(SystemExit) as stopped:
        exit_on_settings_error(lambda: load_data_settings(data_environ(LOCK_TTL="soon")))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LOCK_TTL" in err


def test_servers_listen_on_bind_address_and_their_port(monkeypatch):
    monkeypatch.setenv("BIND_ADDRESS", "10.77.0.5")
    monkeypatch.setenv("DATA_PORT", "8010")
    assert bind_setting("DATA_PORT", "8000") == "10.77.0.5:8010"
    monkeypatch.delenv("BIND_ADDRESS")
    assert bind_setting("BUSINESS_PORT", "8001").startswith("127.0.0.1:")


@pytest.mark.parametrize("name, value", [("BIND_ADDRESS", "localhost; rm"), ("BIND_ADDRESS", ""),
                                         ("DATA_PORT", "70000"), ("DATA_PORT", "http")])
def test_a_bad_bind_setting_names_its_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=f"^{name}:"):
        bind_setting("DATA_PORT", "8000")


def test_a_token_or_a_name_is_a_clients_or_an_operators_never_both():
    with pytest.raises(SettingsError, match="CLIENT_TOKENS: tester share a token with OPERATOR_TOKENS"):
        load_business_settings(business_environ_for("b1", "http://127.0.0.1:8000",
                                                    OPERATOR_TOKENS="ops:test-client-token"))
    with pytest.raises(SettingsError, match="CLIENT_TOKENS: other also named in OPERATOR_TOKENS"):
        load_business_settings(business_environ_for("b1", "http://127.0.0.1:8000",
                                                    OPERATOR_TOKENS="other:an-operators-token"))


def test_the_client_reads_whom_its_check_runs_as():
    settings = load_client_settings({"CLIENT_TOKENS": "ann:token-ann-1,bob:token-bob,ann:token-ann-2",
                                     "OPERATOR_TOKEN": " token-ops "})
    assert settings.client_tokens == {"ann": "token-ann-1", "bob": "token-bob"}
    assert settings.operator_token == "token-ops"
    assert load_client_settings({}).client_tokens == {}
    # The client's --clients is read as CLIENT_TOKENS is, and a malformed one named as the option.
    assert client_tokens_by_name("ann:token-ann-1,ann:token-ann-2", "--clients") == {"ann": "token-ann-1"}
    with pytest.raises(SettingsError, match="^--clients: "):
        client_tokens_by_name("ann", "--clients")

"""The broken banks the fault tests are proved against (harness/broken_banks.py) break as they say."""
import json

import pytest

from harness.broken_banks import BusinessLaunch, RefusingWrites
from tests.helpers import FakeClock


def bank_answering(status, error):
    """A WSGI app that answers every request status with {"error": error}."""
    def app(environ, start_response):
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps({"error": error, "message": "-"}).encode()]
    return app


def call(app, method="POST"):
    answered = {}
    body = b"".join(app({"REQUEST_METHOD": method}, lambda status, headers, exc_info=None: answered.update(
        status=status)))
    return answered["status"][:3], json.loads(body)["error"]


def test_refuse_always_refuses_every_write_from_the_start_and_answers_reads(tmp_path):
    bank = RefusingWrites(bank_answering("200 OK", None), None, tmp_path / "state")
    assert call(bank) == ("503", "account_busy")
    assert call(bank, "GET") == ("200", None)


@pytest.mark.parametrize("seconds", [0.0, 3.0])
def test_a_bank_refuses_every_write_from_seconds_after_any_of_its_servers_answered_data_unavailable(tmp_path, seconds):
    clock, state = FakeClock(), tmp_path / "state"
    unavailable = RefusingWrites(bank_answering("503 SERVICE UNAVAILABLE", "data_unavailable"), seconds, state, clock)
    other_server = RefusingWrites(bank_answering("200 OK", None), seconds, state, clock)
    assert call(other_server) == ("200", None)
    assert call(unavailable) == ("503", "data_unavailable")
    if seconds:
        clock.advance(seconds - 0.1)
        assert call(other_server) == ("200", None)
        clock.advance(0.1)
    assert call(other_server) == ("503", "account_busy")
    assert call(other_server, "GET") == ("200", None)


def test_the_real_bank_is_launched_unless_broken_bank_names_a_kind(tmp_path, monkeypatch):
    monkeypatch.delenv("BROKEN_BANK", raising=False)
    real = BusinessLaunch({"BUSINESS_ID": "b1"}, tmp_path)
    assert (real.app, real.env) == (None, {"BUSINESS_ID": "b1"})
    monkeypatch.setenv("BROKEN_BANK", "refuse-3s-after-unavailable")
    broken = BusinessLaunch({"BUSINESS_ID": "b1"}, tmp_path)
    assert broken.app == "harness.broken_banks:create_app()"
    assert broken.env == {"BUSINESS_ID": "b1", "BROKEN_BANK_STATE": str(tmp_path / "broken-bank.state")}
    monkeypatch.setenv("BROKEN_BANK", "refuse-sometimes")
    with pytest.raises(SystemExit, match="BROKEN_BANK: must be one of"):
        BusinessLaunch({}, tmp_path)

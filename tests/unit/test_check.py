"""The client's checker finds the violations it exists to find, and none in a correct bank."""
import io
import threading
import time

import pytest

from client.__main__ import verdict
from client.check import BankCheck
from client.check_report import percentile
from client.clients import CheckClients
from client.hold_check import hold_id_of
from client.infra.bank_api import Reply
from shared.money import format_cents, parse_cents
from shared.timestamps import rfc3339

FAKE_SECOND_MS = 20         # a hold's second on the fake bank: its holds expire within a check's run

CLIENTS = CheckClients({"ann": "token-ann", "bob": "token-bob"}, ("mallory", "token-mallory"), "token-ops")
NAMES = {token: name for name, token in {**CLIENTS.clients, CLIENTS.adversary[0]: CLIENTS.adversary[1]}.items()}


class FakeBank:
    """An in-memory bank API with owners and statements; `flaw` makes it wrong in one way."""

    def __init__(self, flaw=None):
        self.balances, self.flaw, self.calls = {}, flaw, 0
        self.owners = {}            # account -> the client whose deposit created it
        self.entries = {}           # account -> its history, oldest first
        self.holds = {}             # hold id -> {"origin", "target", "cents", "expires_at", "state", ...}
        self.answered = {}          # (client, key) -> the first answer to a hold operation
        self.mutex = threading.Lock()

    def _reply(self, status, **body):
        return Reply(status, body, 0.001, "fake")

    def _unknown(self):
        return self._reply(404, error="account_not_found", message="no such account")

    def _may_read(self, account, token):
        return token == CLIENTS.operator or self.flaw == "leak" or self.owners.get(account) == NAMES.get(token)

    def _may_debit(self, account, token):
        return self.flaw == "theft" or self.owners.get(account) == NAMES.get(token)

    def _record(self, account, kind, cents, key, token, counterparty=None, operation=None):
        entries = self.entries.setdefault(account, [])
        entries.append({"seq": len(entries) + 1, "kind": kind, "amount": format_cents(cents),
                        "balance": format_cents(self.balances[account]), "counterparty": counterparty,
                        "operation": operation or f"{NAMES[token]}:{key}", "idempotency_key": key,
                        "at": "2026-12-01T00:00:00.000Z"})

    def _available(self, account):
        self._expire_due()
        return self.balances[account] - sum(hold["cents"] for hold in self.holds.values()
                                            if hold["origin"] == account and hold["state"] == "held")

    def _expire_due(self):
        now = int(time.time() * 1000)
        for hold_id, hold in self.holds.items():
            if hold["state"] == "held" and hold["expires_at"] <= now and self.flaw != "never_expire":
                hold.update(state="expired", closed_at=now)
                self._record(hold["origin"], "hold_expiry", hold["cents"], None, None, hold["target"],
                             f"expiry-{hold_id}")

    def _hold_body(self, hold_id, **more):
        hold = self.holds[hold_id]
        body = {"id": hold_id, "origin": hold["origin"], "target": hold["target"],
                "amount": format_cents(hold["cents"]), "state": hold["state"],
                "expires_at": rfc3339(hold["expires_at"]),
                "closed_at": None if hold["closed_at"] is None else rfc3339(hold["closed_at"]), **more}
        if hold["state"] == "captured":
            body["captured"] = format_cents(hold["captured"])
        return body

    def place_hold(self, origin, target, amount, expires_in=None, key=None, token=None):
        with self.mutex:
            client, cents = NAMES[token], parse_cents(amount)
            if (client, key) in self.answered:
                return self.answered[client, key]
            if self.owners.get(origin) != client or target not in self.balances:
                return self._unknown()
            if self._available(origin) < cents:
                return self._reply(422, error="insufficient_funds")
            hold_id, now = hold_id_of(client, key), int(time.time() * 1000)
            self.holds[hold_id] = {"origin": origin, "target": target, "cents": cents, "state": "held",
                                   "expires_at": now + expires_in * FAKE_SECOND_MS, "closed_at": None,
                                   "captured": 0, "parties": (client, self.owners[target])}
            self._record(origin, "hold", cents, key, token, target)
            answer = self.answered[client, key] = self._reply(201, **self._hold_body(hold_id))
            return answer

    def capture(self, hold_id, amount=None, key=None, token=None):
        return self._close(hold_id, "capture", amount, key, token)

    def release(self, hold_id, key=None, token=None):
        return self._close(hold_id, "release", None, key, token)

    def _close(self, hold_id, kind, amount, key, token):
        with self.mutex:
            client = NAMES[token]
            if (client, key) in self.answered:
                return self.answered[client, key]
            hold = self.holds.get(hold_id)
            if hold is None or client not in hold["parties"]:
                return self._reply(404, error="hold_not_found")
            self._expire_due()
            # close_twice_unanswered: a hold closed already is closed again, and the answer lost.
            again = self.flaw == "close_twice_unanswered" and hold["state"] != "held"
            if hold["state"] != "held" and not (self.flaw == "capture_twice" and hold["state"] == "captured") \
                    and not again:
                return self._reply(409, error="hold_closed")
            if kind == "capture" and client != hold["parties"][1]:
                return self._reply(403, error="forbidden")
            origin, target, now = hold["origin"], hold["target"], int(time.time() * 1000)
            if kind == "release":
                hold.update(state="released", closed_at=now)
                self._record(origin, "hold_release", hold["cents"], key, token, target)
            else:
                captured = hold["cents"] if amount is None else parse_cents(amount)
                hold.update(state="captured", closed_at=now, captured=captured)
                self.balances[origin] -= captured
                self.balances[target] += captured
                self._record(origin, "capture_out", captured, key, token, target)
                if captured < hold["cents"]:
                    self._record(origin, "hold_release", hold["cents"] - captured, key, token, target)
                self._record(target, "capture_in", captured, key, token, origin)
            answer = self.answered[client, key] = self._reply(200, **self._hold_body(
                hold_id, **({"target_balance": format_cents(self.balances[target])} if kind == "capture" else {})))
            if again:
                answer = self.answered[client, key] = self._reply(None, error="no_answer")
            return answer

    def hold(self, hold_id, token=None):
        with self.mutex:
            self._expire_due()
            if hold_id not in self.holds:
                return self._reply(404, error="hold_not_found")
            return self._reply(200, **self._hold_body(hold_id))

    def history(self, account, limit=100, cursor=None, token=None):
        with self.mutex:
            if account not in self.balances or not self._may_read(account, token):
                return self._unknown()
            entries = [dict(entry) for entry in self.entries.get(account, [])]
        # Each flaw spoils the statement of one account in one place, once it has a few entries.
        if account.endswith("-0") and len(entries) > 5:
            if self.flaw == "drop_entry":
                del entries[3]
            elif self.flaw == "duplicate_entry":
                entries.insert(3, dict(entries[3]))
            elif self.flaw == "reorder_entries":
                entries[2], entries[3] = entries[3], entries[2]
            elif self.flaw == "phantom_entry":
                entries.append({**entries[-1], "seq": len(entries) + 1, "kind": "deposit", "amount": "0.01",
                                "balance": format_cents(parse_cents(entries[-1]["balance"]) + 1),
                                "idempotency_key": "nobody-sent-this"})
        newest_first = entries[::-1]
        start = int(cursor or 0)
        page = newest_first[start:start + limit]
        more = start + limit < len(newest_first)
        return self._reply(200, account=account, entries=page, next_cursor=str(start + limit) if more else None)

    def deposit(self, account, amount, key=None, token=None):
        with self.mutex:
            self.calls += 1
            if self.flaw == "silent" and account in self.balances:
                return self._reply(None, error="no_answer")
            new = self.balances.get(account, 0) + parse_cents(amount)
            self.owners.setdefault(account, NAMES[token])
            if not (self.flaw == "lose_deposits" and self.calls % 7 == 0 and account in self.balances):
                self.balances[account] = new
                self._record(account, "deposit", parse_cents(amount), key, token)
            if self.owners[account] != NAMES[token]:
                return self._reply(200, account=account, amount=amount)
            return self._reply(200, balance=format_cents(new))

    def withdraw(self, account, amount, key=None, token=None):
        with self.mutex:
            if account not in self.balances or not self._may_debit(account, token):
                return self._unknown()
            new = self.balances[account] - parse_cents(amount)
            if self._available(account) < parse_cents(amount) and self.flaw != "overdraw":
                return self._reply(422, error="insufficient_funds")
            self.balances[account] = new
            self._record(account, "withdrawal", parse_cents(amount), key, token)
            return self._reply(200, balance=format_cents(new))

    def transfer(self, origin, target, amount, key=None, token=None):
        with self.mutex:
            if not self._may_debit(origin, token):
                return self._unknown()
            cents = parse_cents(amount)
            if self._available(origin) < cents:
                return self._reply(422, error="insufficient_funds")
            self.balances[origin] -= cents
            self.balances[target] += cents
            self._record(origin, "transfer_out", cents, key, token, target)
            self._record(target, "transfer_in", cents, key, token, origin)
            shown = {"target_balance": format_cents(self.balances[target])} if self._may_read(target, token) else {}
            return self._reply(200, origin_balance=format_cents(self.balances[origin]), **shown)

    def balance(self, account, token=None):
        with self.mutex:
            if not self._may_read(account, token):
                return self._unknown()
            return self._reply(200, balance=format_cents(self.balances[account]),
                               available=format_cents(self._available(account)))

    def account(self, account, token=None):
        with self.mutex:
            if not self._may_read(account, token):
                return self._unknown()
            return self._reply(200, account=account, owner=self.owners[account],
                               balance=format_cents(self.balances[account]))


def run_check(bank, **options):
    return BankCheck([bank], CLIENTS, workers=4, accounts=3, operations=300, seed=3, out=io.StringIO(),
                     settle_seconds=1, **options).run()


def test_a_correct_bank_has_no_violation():
    report = run_check(FakeBank())
    assert report.violations == [] and len(report.events) == 300


def test_acknowledged_deposits_that_were_lost_are_violations():
    report = run_check(FakeBank("lose_deposits"))
    assert any("expected" in violation for violation in report.violations)


@pytest.mark.parametrize("flaw, found", [
    ("drop_entry", "without gaps"), ("duplicate_entry", "without gaps"), ("reorder_entries", "without gaps"),
    ("phantom_entry", "no operation of the check")])
def test_a_statement_that_drops_duplicates_reorders_or_invents_an_entry_is_a_violation(flaw, found):
    report = run_check(FakeBank(flaw))
    assert any(found in violation for violation in report.violations), report.violations
    # The balances themselves are right: only the statement gives it away.
    assert not any("expected" in violation for violation in report.violations)


def test_a_correct_bank_has_every_write_once_in_its_statements():
    report = run_check(FakeBank())
    written = [e for e in report.events if e.key is not None and e.outcome == "ok"]
    in_statements = sum(len(entries) for entries in report.statements.values())
    # Each account's opening deposit, the adversary's own included, each acknowledged write and each expiry.
    entries = {"transfer": 2, "capture": 2, "hold": 1, "release": 1}
    assert in_statements == 4 + sum(entries.get(e.kind, 1) + (e.kind == "capture" and e.captured_cents < e.held_cents)
                                    for e in written) + sum(1 for h in report.holds.values() if h["state"] == "expired")
    assert {"captured", "released", "expired"} <= {hold["state"] for hold in report.holds.values()}
    assert report.thefts and all((e.status, e.error) in ((404, "account_not_found"), (404, "hold_not_found"))
                                 for e in report.thefts)


@pytest.mark.parametrize("flaw, found", [("capture_twice", "captures of it were acknowledged"),
                                         ("never_expire", "still not closed"),
                                         ("close_twice_unanswered", "closed in its origin's statement by")])
def test_a_hold_captured_twice_or_never_expired_by_the_bank_is_a_violation(flaw, found):
    report = run_check(FakeBank(flaw))
    assert any(found in violation for violation in report.violations), report.violations[:5]


@pytest.mark.parametrize("flaw, found", [("theft", "was answered 200 and applied"), ("leak", "was answered 200")])
def test_a_theft_applied_or_a_read_of_anothers_account_answered_is_a_violation(flaw, found):
    report = run_check(FakeBank(flaw))
    assert any(violation.startswith("theft: mallory's") and found in violation for violation in report.violations)
    if flaw == "theft":
        assert any("not by its owner" in violation for violation in report.violations), report.violations


def test_a_negative_balance_is_a_violation():
    # One worker: the seeded workload takes an account below zero in the same order every run (35 times here), where
    # four workers' interleavings sometimes never did once the workload also held money.
    report = BankCheck([FakeBank("overdraw")], CLIENTS, workers=1, accounts=3, operations=300, seed=3,
                       out=io.StringIO(), settle_seconds=1).run()
    assert any("negative balance" in violation for violation in report.violations)


def test_operations_without_an_answer_are_unknown_and_bounded():
    report = BankCheck([FakeBank("silent")], CLIENTS, workers=2, accounts=2, operations=50, seed=1, out=io.StringIO(),
                       attempts=2, retry_pause=0).run()
    assert report.unknown and any("unknown outcome" in violation for violation in report.violations)


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 99), percentile([5], 95)) == (50, 99, 5)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_timed_run_shows_a_live_line_with_time_left_rate_unknown_outcomes_and_violations():
    out = Terminal()
    BankCheck([FakeBank("overdraw")], CLIENTS, workers=2, accounts=2, duration=0.6, seed=1, out=out).run()
    live = [part for part in out.getvalue().split("\r") if "s left" in part]
    assert live, out.getvalue()[:500]
    assert "op/s" in live[-1] and "unknown" in live[-1] and "violations so far" in live[-1]
    assert any(" 0 violations so far" not in part for part in live), "the overdraws never showed"


def test_the_verdict_says_what_was_checked_and_whether_it_passed():
    passing = run_check(FakeBank())
    failing = run_check(FakeBank("lose_deposits"))

    class Tour:
        checks, failures = 20, 0

    assert verdict("demo", Tour(), passing) == (True, "demo passed: 20 features, 300 operations checked, no violation")
    passed, line = verdict("check", None, failing)
    assert not passed and line.startswith("check FAILED: 300 operations checked, ") and "VIOLATIONS" in line


class SilentServer:
    """A business server that never answers (paused, or cut off from the client)."""

    def __init__(self):
        self.calls = 0

    def _no_answer(self, *args, **kwargs):
        self.calls += 1
        return Reply(None, {"error": "no_answer"}, 3.0, "silent")

    deposit = withdraw = transfer = balance = history = account = place_hold = capture = release = hold = _no_answer


def test_a_server_that_does_not_answer_is_passed_over_and_the_rest_serve_everything():
    silent, bank = SilentServer(), FakeBank()
    report = BankCheck([silent, bank], CLIENTS, workers=4, accounts=3, operations=300, seed=3, out=io.StringIO()).run()
    assert report.violations == [] and len(report.unknown) == 0
    # Each worker may find it silent once; then it is asked only if the other fails too.
    assert silent.calls <= 4


def test_only_attempts_without_an_answer_or_with_a_5xx_count_as_failed_not_refusals():
    report = BankCheck([FakeBank("silent")], CLIENTS, workers=2, accounts=2, operations=60, seed=1, out=io.StringIO(),
                       attempts=2, retry_pause=0).run()
    refused = [e for e in report.events if e.outcome == "refused"]
    silent = [e for e in report.events if e.outcome == "unknown"]
    assert refused and silent
    assert all(e.failures == [] for e in refused)
    assert all(len(e.failures) == e.attempts and all(status is None for _, status, _ in e.failures) for e in silent)

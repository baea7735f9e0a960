"""The feature tour: every feature of the bank exercised against the running servers, one PASS/FAIL line each."""
import time
import uuid

from shared.money import format_cents, parse_cents


class Tour:
    def __init__(self, apis, clients, out):
        """apis: one BankApi per business server, with the touring client's token; clients: the CheckClients whose
        adversary tries to steal, and whose operator reads."""
        self._apis, self._clients, self._out = apis, clients, out
        self.checks = self.failures = 0

    def run(self):
        first, other = self._apis[0], self._apis[-1]
        run_id = uuid.uuid4().hex[:8]
        alice, bob = f"tour-{run_id}-alice", f"tour-{run_id}-bob"
        self._expect("deposit creates an account", first.deposit(alice, "150.00"), 200, balance="150.00")
        self._expect("balance on another server", other.balance(alice), 200, balance="150.00")
        self._expect("withdrawal", first.withdraw(alice, "20.50"), 200, balance="129.50")
        self._expect("overdraft is refused", other.withdraw(alice, "129.51"), 422, error="insufficient_funds")
        self._expect("balance unchanged after the refusal", first.balance(alice), 200, balance="129.50")
        self._expect("deposit to a second account", other.deposit(bob, "0.50"), 200, balance="0.50")
        self._expect("transfer", first.transfer(alice, bob, "29.50"), 200,
                     origin_balance="100.00", target_balance="30.00")
        self._expect("transfer beyond the balance is refused", other.transfer(bob, alice, "30.01"), 422,
                     error="insufficient_funds")
        self._expect("transfer to an unknown account is refused",
                     first.transfer(alice, f"tour-{run_id}-nobody", "1.00"), 404, error="account_not_found")
        self._expect("unknown account has no balance", first.balance(f"tour-{run_id}-nobody"), 404,
                     error="account_not_found")
        self._expect("wrong token is refused", first.deposit(alice, "1.00", token="not-a-valid-token"), 401,
                     error="unauthorized")
        for amount in ("1e3", "-5", "10.555", "abc"):
            self._expect(f"malformed amount {amount!r} is refused", first.deposit(alice, amount), 400,
                         error="invalid_amount")
        key = f"tour-{run_id}-key"
        self._expect("withdrawal with an Idempotency-Key", first.withdraw(alice, "10.00", key=key), 200,
                     balance="90.00")
        retry = other.withdraw(alice, "10.00", key=key)
        self._expect("the same retry on another server returns the first result", retry, 200, balance="90.00")
        self._check("... and says it was replayed", retry.replayed, "Idempotent-Replayed: true")
        self._expect("balance shows it applied once", first.balance(alice), 200, balance="90.00")
        statement = other.history(alice)
        kinds = [(e.get("kind"), e.get("balance")) for e in statement.body.get("entries", [])]
        self._check("the statement lists every change, newest first, with the balance after it",
                    statement.status == 200 and kinds == [("withdrawal", "90.00"), ("transfer_out", "100.00"),
                                                          ("withdrawal", "129.50"), ("deposit", "150.00")],
                    f"{statement.url.split('//', 1)[-1]} -> {statement.status} {kinds}")
        keyed = [e for e in statement.body.get("entries", []) if e.get("idempotency_key") == key]
        self._check("... the retried withdrawal once, under its Idempotency-Key", len(keyed) == 1,
                    f"{len(keyed)} entries with key {key}")
        totals = [parse_cents(first.balance(a).body.get("balance", "0")) for a in (alice, bob)]
        self._check("no money created or lost", sum(totals) == 15050 - 2050 - 1000,
                    f"sum {format_cents(sum(totals))}")
        self._whose(run_id, alice, bob, first, other)
        self._holds(alice, bob, first, other)
        return self.failures == 0

    def _holds(self, alice, bob, first, other):
        """A hold sets money aside; its target's owner captures it once, in part; another is released; a third
        expires by itself."""
        thief = self._clients.adversary[1]
        placed = first.place_hold(alice, bob, "40.00", 60)
        self._expect("a hold sets money aside: the balance stays, what is available falls", placed, 201,
                     state="held", amount="40.00", balance="90.01", available="50.01")
        hold = placed.body.get("id", "0" * 32)
        self._expect("... every server shows it", other.balance(alice), 200, balance="90.01", available="50.01")
        self._expect("... a withdrawal spends only what is available", first.withdraw(alice, "50.02"), 422,
                     error="insufficient_funds")
        self._expect("... no one else may take it: answered as an unknown hold",
                     other.capture(hold, token=thief), 404, error="hold_not_found")
        self._expect("the target's owner captures part of it; the rest comes back", other.capture(hold, "15.00"), 200,
                     state="captured", captured="15.00", target_balance="45.00")
        self._expect("... once: a hold is captured, released or expired, for good", first.capture(hold), 409,
                     error="hold_closed")
        self._expect("... and the origin has what is left", other.balance(alice), 200, balance="75.01",
                     available="75.01")
        second = first.place_hold(alice, bob, "10.00", 60).body.get("id", "0" * 32)
        self._expect("a hold released gives it all back", other.release(second), 200, state="released")
        third = first.place_hold(alice, bob, "1.00", 1).body.get("id", "0" * 32)
        deadline = time.monotonic() + 10
        while (seen := other.hold(third)).body.get("closed_at") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        self._expect("a hold not captured in time expires, and the bank closes it itself", seen, 200,
                     state="expired")
        kinds = [e.get("kind") for e in first.history(alice, 8).body.get("entries", [])]
        self._check("the statement shows each hold, capture, release and expiry",
                    kinds[:7] == ["hold_expiry", "hold", "hold_release", "hold", "hold_release", "capture_out",
                                  "hold"], f"{kinds}")

    def _whose(self, run_id, alice, bob, first, other):
        """Only an account's owner takes money out or reads it; anyone pays in; an operator reads and moves nothing."""
        thief_name, thief = self._clients.adversary
        operator = self._clients.operator
        self._expect(f"{thief_name}'s withdrawal from someone else's account is refused as if it did not exist",
                     other.withdraw(alice, "1.00", token=thief), 404, error="account_not_found")
        self._expect(f"... and so is {thief_name}'s look at its balance", first.balance(alice, token=thief), 404,
                     error="account_not_found")
        self._expect(f"... {thief_name}'s payment into it is taken, answered without its balance",
                     first.deposit(alice, "0.01", token=thief), 200, account=alice, amount="0.01", balance=None)
        self._expect("... and the owner sees it, nothing taken", other.balance(alice), 200, balance="90.01")
        self._expect("an operator reads any account and its owner", first.account(alice, token=operator), 200,
                     account=alice, balance="90.01")
        self._expect("... and moves no money", other.withdraw(alice, "1.00", token=operator), 403, error="forbidden")
        opened = f"tour-{run_id}-opened"
        self._expect("opening an account gives it a zero balance", first.open(opened), 201, account=opened,
                     balance="0.00")
        self._expect("... once: its id is then taken", other.open(opened, token=thief), 409, error="account_exists")
        listed = first.accounts(100)
        mine = [a.get("account") for a in listed.body.get("accounts", [])
                if a.get("account", "").startswith(f"tour-{run_id}")]
        self._check("the client's own accounts are listed", listed.status == 200 and mine == sorted(
            [alice, bob, opened]), f"{listed.status} {mine}")

    def _expect(self, title, reply, status, **fields):
        got = {name: reply.body.get(name) for name in fields}
        passed = reply.status == status and got == fields
        method_path = reply.url.split("//", 1)[-1]
        self._line(passed, title, f"{method_path} -> {reply.status} {reply.body}")

    def _check(self, title, passed, detail):
        self._line(passed, title, detail)

    def _line(self, passed, title, detail):
        self.checks += 1
        if not passed:
            self.failures += 1
        print(f"{'PASS' if passed else 'FAIL'}  {title}: {detail}", file=self._out, flush=True)

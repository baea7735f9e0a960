"""The feature tour: every feature of the bank exercised against the running servers, one PASS/FAIL line each."""
import uuid

from shared.money import format_cents, parse_cents


class Tour:
    def __init__(self, apis, out):
        self._apis, self._out = apis, out
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
        return self.failures == 0

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

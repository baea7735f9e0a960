"""A Jepsen-style bank check: concurrent random operations over all business servers, then a checker.

Every write carries an Idempotency-Key, so an operation whose outcome is unknown (no answer, data_unavailable)
is sent again with the same key until an answer settles it; what stays unknown is reported and bounded.

It runs as several clients (client/clients.py): each owns some of the accounts, debits and reads only its own, and
pays into the others'; an adversary owns one account and tries every debit and read of the others', each of
which must be answered exactly as an unknown account (404 account_not_found) and applied nowhere. Holds too: each
client places holds on its own accounts for the others', the targets' owners capture them (in whole or in part),
either party releases them, the rest expire within seconds, and client/hold_check.py settles every one; the
adversary's captures and releases of them must be answered as an unknown hold's.
"""
import collections
import random
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

from client import hold_check
from client.check_report import print_report
from client.check_rules import READS, changes_of, observed_balances, seen_violations, theft_violations
from client.statements import StatementUnavailable, read_statement, statement_violations, transfer_halves_violations
from shared.failover import PassOver
from shared.money import format_cents, parse_signed_cents

OPENING_CENTS = 100_00
# 503 codes for which the servers promise that nothing was applied.
NOTHING_APPLIED = {"account_busy", "queue_full", "idempotency_store_full", "store_full", "history_unavailable",
                   "batcher_unavailable", "holds_full"}
KIND_WEIGHTS = {"deposit": 25, "withdrawal": 20, "transfer": 30, "balance": 15, "theft": 10, "hold": 10,
                "capture": 6, "release": 3}
# What the adversary tries on an account of another client: every debit and every read; and on a hold, to take it.
THEFTS = ("withdrawal", "transfer", "balance", "history", "account", "capture", "release")


@dataclass
class Event:
    kind: str                        # deposit | withdrawal | transfer | balance | hold | capture | release; the
                                     # adversary's also history | account
    accounts: tuple
    amount_cents: int
    client: str = ""                 # the client that sent it
    theft: bool = False              # the adversary's, on another client's account: must be answered as unknown
    key: str | None = None           # the Idempotency-Key of a write
    outcome: str = "unknown"         # ok | refused | unknown
    status: int | None = None
    error: str | None = None         # the last answer's error code
    seconds: float = 0.0
    attempts: int = 0
    finished_at: float = 0.0         # time.monotonic() when its last answer came
    balances: dict = field(default_factory=dict)
    # (time.monotonic(), status, error) of each attempt that got no answer or a 5xx; a refusal (4xx) is an answer
    failures: list = field(default_factory=list)
    hold_id: str | None = None       # a hold's, capture's or release's hold
    held_cents: int = 0              # a capture's or release's: what its hold sets aside
    expires_in: int = 0              # a hold's, in seconds
    captured_cents: int = 0          # an acknowledged capture's: what it moved
    sent_at_ms: int = 0              # Unix ms when its first attempt went out
    available_cents: int | None = None  # what its answer showed available of its (first) account


@dataclass
class Report:
    events: list
    opening: dict
    final: dict
    seconds: float
    violations: list
    statements: dict = field(default_factory=dict)     # account -> its history entries, oldest first
    written: list = field(default_factory=list)     # the clients' accounts it writes (not the adversary's)
    holds: dict = field(default_factory=dict)       # hold id -> the hold as settled at the end (None: none)
    ended_at: float = 0.0       # time.monotonic() when the workload stopped sending new operations

    @property
    def unknown(self):
        return [e for e in self.events if e.outcome == "unknown"]

    @property
    def thefts(self):
        return [e for e in self.events if e.theft]


class BankCheck:
    def __init__(self, apis, clients, workers=8, accounts=5, operations=1000, duration=None, seed=None,
                 out=sys.stdout, attempts=4, retry_pause=0.02, max_unknown_ratio=0.01,
                 hold_seconds=hold_check.HOLD_SECONDS, settle_seconds=hold_check.SETTLE_SECONDS):
        """apis: one BankApi per business server; clients: the CheckClients it runs as; hold_seconds: (fewest,
        most) seconds a hold is placed for; settle_seconds: how long past the last expiry every hold must be
        closed by."""
        self._hold_seconds, self._settle_seconds = hold_seconds, settle_seconds
        self._apis, self._clients = apis, clients
        self._workers, self._account_count = workers, accounts
        self._operations, self._duration = operations, duration
        self._seed = random.randrange(2 ** 32) if seed is None else seed
        self._out = out
        self._attempts, self._retry_pause = attempts, retry_pause
        self._max_unknown_ratio = max_unknown_ratio
        self._run_id = uuid.uuid4().hex[:8]
        names = list(clients.clients)
        # The clients' accounts, owned in turn, and the adversary's own.
        self._owner = {f"chk-{self._run_id}-{i}": names[i % len(names)] for i in range(accounts)}
        self._shared = list(self._owner)
        self._adversary_account = f"chk-{self._run_id}-{clients.adversary[0]}"
        self._owner[self._adversary_account] = clients.adversary[0]
        self._accounts = [*self._shared, self._adversary_account]
        self._tokens = {**clients.clients, clients.adversary[0]: clients.adversary[1]}
        self._servers = PassOver(len(apis))     # a server that did not answer is passed over for a while
        self._events = []
        self._openings = []
        self._events_mutex = threading.Lock()
        self._started_count = 0
        self._acknowledged_writes = 0
        self._stop = threading.Event()
        self._holds = hold_check.PlacedHolds()

    def run(self):
        self._say(f"check {self._run_id}: {self._workers} workers, {self._account_count} accounts of "
                  f"{', '.join(self._clients.clients)}, adversary {self._clients.adversary[0]}, {self._budget()}, "
                  f"{len(self._apis)} servers, seed {self._seed}")
        opening = self._open_accounts()
        started, started_at = time.perf_counter(), time.monotonic()
        progress = threading.Thread(target=self._show_progress, args=(started,), daemon=True)
        progress.start()
        workers = [threading.Thread(target=self._work, args=(i, started_at)) for i in range(self._workers)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        seconds = time.perf_counter() - started
        # A duration's deadline, not the end of the last operation's retries: when the last ones were sent.
        ended_at = min(time.monotonic(), started_at + self._duration) if self._duration else time.monotonic()
        self._stop.set()
        progress.join()
        final = {account: self._settled_balance(account) for account in self._accounts}
        report = Report(self._events, opening, final, seconds, [], ended_at=ended_at, written=list(self._shared))
        report.holds, hold_violations = hold_check.settle(self._apis, self._servers, self._events,
                                                          self._clients.operator, self._say,
                                                          self._hold_seconds[1] + self._settle_seconds)
        report.violations = self._verify(report) + hold_violations + self._verify_statements(report)
        print_report(report, self._say, self._clients.adversary[0])
        return report

    @property
    def accounts(self):
        """The clients' accounts the check opens and works on (not the adversary's own)."""
        return list(self._shared)

    @property
    def acknowledged_writes(self):
        """Writes the bank acknowledged (200) so far: what a run's progress is counted in when it must be real."""
        return self._acknowledged_writes

    def answered_with(self, error):
        """The operations finished so far whose last answer, or a failed attempt's, carried this error code."""
        with self._events_mutex:
            return [event for event in self._events if event.error == error
                    or any(failure[2] == error for failure in event.failures)]

    def _budget(self):
        return f"{self._duration} s" if self._duration else f"{self._operations} operations"

    def _open_accounts(self):
        opening = {}
        for account in self._accounts:
            event = self._send(Event("deposit", (account,), OPENING_CENTS, self._owner[account]),
                               random.Random(account), f"open-{account}")
            if event.outcome != "ok":
                raise SystemExit(f"check: could not open {account}: {event.status} {event.outcome}")
            self._openings.append(event)
            opening[account] = OPENING_CENTS
        return opening

    def _work(self, worker, started_at):
        rng = random.Random(self._seed * 1000 + worker)
        kinds, weights = zip(*KIND_WEIGHTS.items())
        deadline = started_at + self._duration if self._duration else None
        number = 0
        while self._claim(deadline):
            event = self._send(self._next_event(rng, rng.choices(kinds, weights)[0]), rng, f"{worker}-{number}")
            number += 1
            with self._events_mutex:
                self._events.append(event)
                self._acknowledged_writes += event.outcome == "ok" and event.key is not None

    def _next_event(self, rng, kind):
        """A client's operation of kind: a deposit by any client (into another's account too), the rest by the
        owner; or a theft: the adversary's debit or read of another client's account."""
        if kind in ("capture", "release"):
            return self._hold_event(rng, kind)
        if kind == "hold":
            origin, target = rng.sample(self._shared, 2)
            return Event("hold", (origin, target), rng.randint(1, 20_00), self._owner[origin],
                         expires_in=rng.randint(*self._hold_seconds))
        if kind == "theft":
            kind = rng.choice(THEFTS)
            if kind in ("capture", "release"):
                return self._hold_event(rng, kind, theft=True)
            victim = rng.choice(self._shared)
            accounts = (victim, self._adversary_account) if kind == "transfer" else (victim,)
            return Event(kind, accounts, rng.randint(1, 50_00) if kind not in READS else 0,
                         self._clients.adversary[0], theft=True)
        accounts = tuple(rng.sample(self._shared, 2 if kind == "transfer" else 1))
        client = rng.choice(list(self._clients.clients)) if kind == "deposit" else self._owner[accounts[0]]
        return Event(kind, accounts, rng.randint(1, 50_00) if kind != "balance" else 0, client)

    def _hold_event(self, rng, kind, theft=False):
        """A capture (by the target's owner) or release (by either party's) of a hold placed; or the adversary's
        try at one; a deposit while none is placed yet."""
        placed = self._holds.pick(rng)
        if placed is None:
            return self._next_event(rng, "deposit")
        hold_id, origin, target, cents = placed
        amount = rng.choice([0, rng.randint(1, cents)]) if kind == "capture" else 0
        if theft:
            client = self._clients.adversary[0]
        else:
            client = self._owner[target] if kind == "capture" else self._owner[rng.choice((origin, target))]
        return Event(kind, (origin, target), amount, client, theft=theft, hold_id=hold_id, held_cents=cents)

    def _claim(self, deadline):
        if deadline is not None:
            return time.monotonic() < deadline
        with self._events_mutex:
            if self._started_count >= self._operations:
                return False
            self._started_count += 1
            return True

    def _send(self, event, rng, name):
        """Send event's operation, again with the same key while its outcome is open; fill in the outcome."""
        key = event.key = f"chk-{self._run_id}-{name}" if event.kind not in READS else None
        if event.kind == "hold":
            event.hold_id = hold_check.hold_id_of(event.client, key)
        event.sent_at_ms = int(time.time() * 1000)
        token = self._tokens[event.client]
        ambiguous = False
        amount = format_cents(event.amount_cents)
        started = time.perf_counter()
        for attempt in range(1, self._attempts + 1):
            server = rng.choice(self._servers.available())
            api = self._apis[server]
            if event.kind == "deposit":
                reply = api.deposit(event.accounts[0], amount, key, token)
            elif event.kind == "withdrawal":
                reply = api.withdraw(event.accounts[0], amount, key, token)
            elif event.kind == "transfer":
                reply = api.transfer(*event.accounts, amount, key, token)
            elif event.kind == "hold":
                reply = api.place_hold(*event.accounts, amount, event.expires_in, key, token)
            elif event.kind == "capture":
                reply = api.capture(event.hold_id, amount if event.amount_cents else None, key, token)
            elif event.kind == "release":
                reply = api.release(event.hold_id, key, token)
            elif event.kind == "history":
                reply = api.history(event.accounts[0], token=token)
            elif event.kind == "account":
                reply = api.account(event.accounts[0], token)
            else:
                reply = api.balance(event.accounts[0], token)
            event.status, event.error, event.attempts = reply.status, reply.error, attempt
            if reply.status is None or (reply.status == 503 and reply.error == "data_unavailable"):
                self._servers.failed(server)
            else:
                self._servers.answered(server)
            if reply.status is None or reply.status >= 500:
                event.failures.append((time.monotonic(), reply.status, reply.error))
            if reply.status in (200, 201):
                event.outcome = "ok"
                event.balances = {} if event.theft else observed_balances(event, reply.body)
                self._held(event, reply.body)
                break
            if reply.status is not None and 400 <= reply.status < 500:
                event.outcome = "refused"
                break
            if reply.status == 503 and reply.error in NOTHING_APPLIED:
                if not ambiguous:
                    # Settled: nothing was applied. Going on frees this worker for accounts that are not held, so
                    # one account held through a fault does not stall the whole check.
                    event.outcome = "refused"
                    break
                event.outcome = "unknown"
            else:
                ambiguous = True
                event.outcome = "unknown"
            time.sleep(min(self._retry_pause * attempt, 1.0))
        event.seconds = time.perf_counter() - started
        event.finished_at = time.monotonic()
        return event

    def _held(self, event, body):
        """What an acknowledged hold operation tells the rest of the check."""
        if event.theft:
            return
        if event.kind == "hold" and body.get("id") == event.hold_id:
            self._holds.add(event.hold_id, *event.accounts, event.amount_cents)
        elif event.kind == "capture" and "captured" in body:
            event.captured_cents = parse_signed_cents(body["captured"])

    def _settled_balance(self, account):
        rng = random.Random(account)
        for _ in range(50):
            server = rng.choice(self._servers.available())
            reply = self._apis[server].balance(account, self._tokens[self._owner[account]])
            if reply.status == 200:
                self._servers.answered(server)
                return parse_signed_cents(reply.body["balance"])
            self._servers.failed(server)
            time.sleep(0.1)
        raise SystemExit(f"check: no balance of {account} could be read at the end")

    def _verify(self, report):
        violations = []
        expected = dict(report.opening)
        slack = collections.Counter()
        total_expected, total_slack = sum(report.opening.values()), 0
        for event in report.events:
            violations += seen_violations(event) + theft_violations(event)
            effects = changes_of(event)
            if event.outcome == "ok":
                for account, delta in effects.items():
                    expected[account] += delta
                total_expected += sum(effects.values())
            elif event.outcome == "unknown":
                for account, delta in effects.items():
                    slack[account] += abs(delta)
                total_slack += abs(sum(effects.values()))
        for account in self._accounts:
            difference = report.final[account] - expected[account]
            if abs(difference) > slack[account]:
                violations.append(f"{account}: final {format_cents(report.final[account])}, expected "
                                  f"{format_cents(expected[account])} (unknown operations explain at most "
                                  f"{format_cents(slack[account])})")
        total = sum(report.final.values())
        if abs(total - total_expected) > total_slack:
            violations.append(f"total {format_cents(total)} is not the expected {format_cents(total_expected)}")
        allowed_unknown = max(1, int(len(report.events) * self._max_unknown_ratio))
        if len(report.unknown) > allowed_unknown:
            violations.append(f"{len(report.unknown)} operations have an unknown outcome (at most "
                              f"{allowed_unknown} allowed)")
        return violations

    def _verify_statements(self, report):
        """Every account's history against the events: see client/statements.py for what it proves."""
        rng, violations = random.Random(self._seed), []
        touching = collections.defaultdict(list)
        for event in self._openings + report.events:
            for account in event.accounts:
                touching[account].append(event)
        for account in self._accounts:
            try:
                report.statements[account] = read_statement(self._apis, account, self._servers, rng,
                                                            self._clients.operator)
            except StatementUnavailable as error:
                violations.append(str(error))
                continue
            violations += statement_violations(account, self._owner[account], report.statements[account],
                                               report.final[account], touching[account], report.holds)
        if len(report.statements) == len(self._accounts):
            violations += transfer_halves_violations(report.statements, report.events)
            violations += hold_check.closing_violations(report.statements, report.events, report.holds)
        return violations

    def _show_progress(self, started):
        """A live line on a terminal (plain lines otherwise): progress, rate, unknown outcomes, violations so far."""
        interactive = self._out.isatty()
        while not self._stop.wait(0.25 if interactive else 2.0):
            with self._events_mutex:
                events = list(self._events)
            done, elapsed = len(events), time.perf_counter() - started
            if self._duration:
                fraction = min(1.0, elapsed / self._duration)
                budget = f"{elapsed:.0f}/{self._duration:.0f} s, {max(0.0, self._duration - elapsed):.0f} s left"
            else:
                fraction = done / max(1, self._operations)
                budget = f"{done}/{self._operations} operations, {elapsed:.0f} s"
            unknown = sum(1 for event in events if event.outcome == "unknown")
            seen = sum(len(seen_violations(event)) for event in events)
            line = (f"[{'#' * int(fraction * 30):<30}] {budget}, {done / max(elapsed, 1e-9):.0f} op/s, "
                    f"{unknown} unknown, {seen} violations so far")
            print(f"\r{line}" if interactive else line, end="" if interactive else "\n", file=self._out, flush=True)
        if interactive:
            print(file=self._out)

    def _say(self, text):
        print(text, file=self._out, flush=True)

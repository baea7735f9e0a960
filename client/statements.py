"""Statements: an account's whole history read from the bank, and the checker's proof against it.

The proof: sequence numbers 1, 2, 3, ... without gaps; each entry's balance is the one before plus or minus its
amount, never negative; the newest is the final balance; every acknowledged write is there exactly once (by its
Idempotency-Key) in each account it touched, as its kind and amount, with the balance its answer showed; no
refused write is there; one whose outcome is unknown is there at most once, on both sides of a transfer or
neither; nothing is there that the check did not send; every entry names the client that sent it (an operator
reads each entry as recorded: a keyed operation is "client:key"), and every debit its account's owner. A hold,
capture or release is there as all its entries (client/hold_check.py), and each expired hold as one hold_expiry.
"""
import collections
import time
from typing import NamedTuple

from client import hold_check
from shared.money import format_cents, parse_cents, parse_signed_cents

CREDIT_KINDS = ("deposit", "transfer_in", "capture_in")
DEBIT_KINDS = ("withdrawal", "transfer_out", "capture_out")
RESERVATION_KINDS = ("hold", "hold_release", "hold_expiry")     # a hold's own entries: the balance stays
# Debits its owner sends: a capture_out is sent by the target's owner, from a hold the origin's owner placed.
OWNERS_DEBITS = ("withdrawal", "transfer_out", "hold")
MOST_PAGES = 10_000         # pages of one statement at most: a bound on the walk, far past any check's length


class StatementUnavailable(Exception):
    """No server gave a page of the statement."""


class ExpectedEntry(NamedTuple):
    """What an event's entry in one account's history should say."""
    kind: str
    counterparty: str | None


def read_statement(apis, account, servers, rng, token, attempts=50, pause=0.1):
    """Every entry of account's history, oldest first, page by page from whichever server answers (servers: a
    PassOver of apis, rng: a random.Random to choose among those available), read with token."""
    entries, cursor = [], None
    for _ in range(MOST_PAGES):
        page = _page(apis, account, cursor, servers, rng, token, attempts, pause)
        entries += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            return entries[::-1]
    raise StatementUnavailable(f"the statement of {account} has more than {MOST_PAGES} pages")


def _page(apis, account, cursor, servers, rng, token, attempts, pause):
    for _ in range(attempts):
        index = rng.choice(servers.available())
        reply = apis[index].history(account, 100, cursor, token)
        if reply.status == 200:
            servers.answered(index)
            return reply.body
        servers.failed(index)
        time.sleep(pause)
    raise StatementUnavailable(f"no server gave the statement of {account}")


def statement_violations(account, owner, entries, final_cents, events, held=None):
    """What is wrong in account's statement (entries oldest first, as an operator reads them) against the check's
    events on it; owner: the client it belongs to; held: {hold id: the hold as settled} (hold_check.settle)."""
    violations = []
    seqs = [entry["seq"] for entry in entries]
    if seqs != list(range(1, len(entries) + 1)):
        violations.append(f"{account}: history numbers {_sample(seqs)} are not 1, 2, 3, ... without gaps")
    balance = 0
    for entry in entries:
        amount = parse_signed_cents(entry["amount"])
        if entry["kind"] not in RESERVATION_KINDS:
            balance += amount if entry["kind"] in CREDIT_KINDS or entry["kind"] == "adjustment" else -amount
        shown = parse_signed_cents(entry["balance"])
        if shown != balance:
            violations.append(f"{account}: entry {entry['seq']} shows {entry['balance']} after {entry['kind']} "
                              f"{entry['amount']}, but the entries before it add up to {format_cents(balance)}")
            balance = shown
        if shown < 0:
            violations.append(f"{account}: entry {entry['seq']} leaves a negative balance {entry['balance']}")
    if balance != final_cents:
        violations.append(f"{account}: the newest entry's balance {format_cents(balance)} is not the final "
                          f"{format_cents(final_cents)}")
    by_key = collections.defaultdict(list)
    for entry in entries:
        if entry["kind"] != "hold_expiry":      # the bank's own: hold_check.expiry_violations proves them
            by_key[entry["idempotency_key"]].append(entry)
    expected = {event.key: event for event in events if event.key is not None}
    for key, found in by_key.items():
        if key not in expected:
            violations.append(f"{account}: {len(found)} entries ({found[0]['kind']} {found[0]['amount']}) come from "
                              f"no operation of the check (key {key})")
    for key, event in expected.items():
        violations += _event_violations(account, event, by_key.get(key, []))
    for entry in entries:
        sender, _, key = (entry["operation"] or "").partition(":")
        event = expected.get(entry["idempotency_key"])
        if event is not None and (sender, key) != (event.client, event.key):
            violations.append(f"{account}: entry {entry['seq']} is recorded as {entry['operation']}, not as sent by "
                              f"{event.client}")
        if entry["kind"] in OWNERS_DEBITS and sender != owner:
            violations.append(f"{account}: entry {entry['seq']} is a {entry['kind']} of {entry['amount']} by "
                              f"{sender or 'an unnamed client'}, not by its owner {owner}")
    return violations + hold_check.expiry_violations(account, entries, held or {})


def _event_violations(account, event, found):
    if event.kind in hold_check.HOLD_KINDS:
        return _hold_event_violations(account, event, found)
    expected = _entry_of(event, account)
    described = f"{event.kind} {format_cents(event.amount_cents)} (key {event.key})"
    wrong = [e for e in found if (e["kind"], parse_cents(e["amount"]), e["counterparty"]) !=
             (expected.kind, event.amount_cents, expected.counterparty)]
    if wrong:
        return [f"{account}: {described} is recorded as {wrong[0]['kind']} {wrong[0]['amount']}"]
    if event.outcome == "ok":
        if len(found) != 1:
            return [f"{account}: acknowledged {described} appears {len(found)} times in its history"]
        if account in event.balances and parse_signed_cents(found[0]["balance"]) != event.balances[account]:
            return [f"{account}: acknowledged {described} answered balance {format_cents(event.balances[account])}, "
                    f"its entry says {found[0]['balance']}"]
    elif event.outcome == "refused" and found:
        return [f"{account}: refused {described} appears in its history"]
    elif len(found) > 1:
        return [f"{account}: {described} of unknown outcome appears {len(found)} times"]
    return []


def _hold_event_violations(account, event, found):
    """A hold, capture or release is in account's statement as all of its entries, in order, or (refused: must;
    unknown: may) as none."""
    expected = hold_check.expected_entries(event, account)
    recorded = [(e["kind"], parse_cents(e["amount"]), e["counterparty"]) for e in found]
    described = f"{event.kind} of hold {event.hold_id} (key {event.key})"
    if recorded == expected and (event.outcome != "refused" or not expected):
        return []
    if not recorded and event.outcome != "ok":
        return []
    return [f"{account}: {event.outcome} {described} is recorded as {recorded}, not {expected}"]


def transfer_halves_violations(statements, events):
    """A transfer or capture of unknown outcome is in both its accounts' histories or in neither."""
    violations = []
    for event in events:
        if event.kind not in ("transfer", "capture") or event.outcome != "unknown" or event.theft:
            continue
        present = [any(e["idempotency_key"] == event.key for e in statements[account]) for account in event.accounts]
        if present[0] != present[1]:
            violations.append(f"transfer {event.key} of unknown outcome is in the history of only one of "
                              f"{event.accounts[0]} and {event.accounts[1]}")
    return violations


def _entry_of(event, account):
    """The ExpectedEntry of the entry event makes in account's history."""
    if event.kind != "transfer":
        return ExpectedEntry(event.kind, None)
    origin, target = event.accounts
    return ExpectedEntry("transfer_out", target) if account == origin else ExpectedEntry("transfer_in", origin)


def _sample(values, most=12):
    return ", ".join(map(str, values[:most])) + (", ..." if len(values) > most else "")

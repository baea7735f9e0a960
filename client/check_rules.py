"""The check's rules for one event: what its answer shows wrong by itself, what the adversary's answer must be,
and what the event changes if it applied (client/check.py)."""
from shared.money import format_cents, parse_signed_cents

READS = ("balance", "history", "account")


def seen_violations(event):
    """What is wrong in one answer by itself: a negative balance, or available, a server error other than 503, a
    capture that moved other than it asked."""
    violations = [f"negative balance {format_cents(cents)} of {account} seen in {event.kind}"
                  for account, cents in event.balances.items() if cents < 0]
    if event.available_cents is not None and event.available_cents < 0:
        violations.append(f"negative available {format_cents(event.available_cents)} of {event.accounts[0]}")
    if event.kind == "capture" and event.outcome == "ok" and not event.theft and not (
            0 < event.captured_cents == (event.amount_cents or event.held_cents)):
        violations.append(f"capture of hold {event.hold_id} asked {format_cents(event.amount_cents)} of "
                          f"{format_cents(event.held_cents)}, moved {format_cents(event.captured_cents)}")
    if event.status is not None and event.status >= 500 and event.status != 503:
        violations.append(f"server error {event.status} on {event.kind} {event.accounts}")
    return violations


def theft_violations(event):
    """What is wrong in the answer to one of the adversary's tries: anything but what an unknown account (or hold)
    gets (a 503 or no answer under a fault settles nothing; the statements show whether a debit applied)."""
    unknown = "hold_not_found" if event.kind in ("capture", "release") else "account_not_found"
    if not event.theft or event.status is None or event.status >= 500 or (event.status, event.error) == (404, unknown):
        return []
    what = f"{event.client}'s {event.kind} of {event.hold_id or event.accounts[0]}"
    if event.outcome == "ok":
        return [f"theft: {what} was answered 200" + (" and applied" if event.kind not in READS else "")]
    return [f"theft: {what} was answered {event.status} {event.error}, not as an unknown account"]


def changes_of(event):
    """{account: change in cents} that event has if it was applied."""
    if event.kind == "deposit":
        return {event.accounts[0]: event.amount_cents}
    if event.kind == "withdrawal":
        return {event.accounts[0]: -event.amount_cents}
    if event.kind == "transfer":
        return {event.accounts[0]: -event.amount_cents, event.accounts[1]: event.amount_cents}
    if event.kind == "capture" and not event.theft:
        moved = event.captured_cents or event.amount_cents or event.held_cents
        return {event.accounts[0]: -moved, event.accounts[1]: moved}
    return {}


def observed_balances(event, body):
    """The balances an answer showed: none of an account the sender does not own (a payment into it)."""
    if "available" in body:
        event.available_cents = parse_signed_cents(body["available"])
    shown = {"balance": 0} if event.kind != "transfer" else {"origin_balance": 0, "target_balance": 1}
    if event.kind == "capture":
        shown["target_balance"] = 1
    return {event.accounts[position]: parse_signed_cents(body[field]) for field, position in shown.items()
            if field in body}

"""The check's holds: which hold a capture or release goes to, and the proof that settles every hold at the end.

Every hold the check places has an Idempotency-Key, so its id is known even when its placement's outcome is not
(the bank's hold id is its placing operation's reference: the first 32 hex digits of SHA-256 of "client:key"). At
the end every hold is read back once the bank has closed it — each is placed to expire within seconds, so the bank
must close every one by itself — and must be exactly what the acknowledged answers allow:

- a hold whose placement was acknowledged exists, one refused does not, one unknown may;
- captured: by a capture sent, at most one acknowledged (with the amount it answered), none after its expiry, and
  no release acknowledged; released: by a release sent, before its expiry, no capture acknowledged; expired: closed
  at or after its expiry, no capture or release acknowledged;
- every statement shows each expired hold's hold_expiry once, on its origin, and no other.
"""
import random
import threading
import time

from shared.money import format_cents, parse_cents
from shared.timestamps import unix_ms
from shared.validation import operation_reference

HOLD_SECONDS = (1, 2)           # each hold expires this many seconds after it is placed, at random
SETTLE_SECONDS = 30             # the bank closes every hold within this of its expiry, or it is a violation
# A placement of unknown outcome may still land this long after its last answer (a lease's life, and a business
# server sending its commit again): until then its hold's absence settles nothing.
UNKNOWN_GRACE_SECONDS = 15
HOLD_KINDS = ("hold", "capture", "release")


def hold_id_of(client, key):
    """The id of the hold a client's request under key places: its keyed operation's reference."""
    return operation_reference(f"{client}:{key}")


class PlacedHolds:
    """The holds the bank acknowledged placing, for the workers' captures and releases to go to."""

    def __init__(self):
        self._held = []             # (hold id, origin, target, cents)
        self._mutex = threading.Lock()

    def add(self, hold_id, origin, target, cents):
        with self._mutex:
            self._held.append((hold_id, origin, target, cents))

    def pick(self, rng):
        """A recent one (most are still held), or None if none is placed yet."""
        with self._mutex:
            return rng.choice(self._held[-20:]) if self._held else None


def settle(apis, servers, events, read_token, say, wait_seconds, rng=None):
    """Read every hold the check placed (or may have) once the bank has closed it, waiting at most wait_seconds
    from now for the last: ({hold id: the hold as read, or None if there is none}, violations)."""
    rng = rng or random.Random(0)
    placed = {event.hold_id: event for event in events if event.kind == "hold" and event.outcome != "refused"
              and not event.theft}
    found, violations = {}, []
    deadline = time.monotonic() + wait_seconds
    waiting, absent = set(placed), set()     # absent: unknown placements read as none, their grace still running
    while waiting and (time.monotonic() < deadline or absent):
        absent = set()
        for hold_id in sorted(waiting):
            reply = apis[rng.choice(servers.available())].hold(hold_id, read_token)
            event = placed[hold_id]
            if reply.status == 404 and (event.outcome == "ok" or
                                        time.monotonic() - event.finished_at > UNKNOWN_GRACE_SECONDS):
                found[hold_id] = None
            elif reply.status == 404:
                absent.add(hold_id)
            elif reply.status == 200 and reply.body["closed_at"] is not None:
                found[hold_id] = reply.body
        waiting -= set(found)
        if waiting:
            time.sleep(0.2)
    for hold_id in sorted(waiting):
        violations.append(f"hold {hold_id} still not closed {wait_seconds} s after the check ended")
    say(f"holds: {len(found)} of {len(placed)} settled")
    by_hold = {}
    for event in events:
        if event.kind in ("capture", "release") and not event.theft:
            by_hold.setdefault(event.hold_id, []).append(event)
    for hold_id, event in placed.items():
        if hold_id in found:
            violations += _hold_violations(hold_id, event, found[hold_id], by_hold.get(hold_id, []))
    return found, violations


def _hold_violations(hold_id, placing, hold, closers):
    if hold is None:
        return [f"hold {hold_id}: acknowledged, but the bank has no such hold"] if placing.outcome == "ok" else []
    if (hold["origin"], hold["target"], parse_cents(hold["amount"])) != (*placing.accounts, placing.amount_cents):
        return [f"hold {hold_id}: is {hold['origin']} -> {hold['target']} {hold['amount']}, not as placed"]
    state, closed_at, expires_at = hold["state"], unix_ms(hold["closed_at"]), unix_ms(hold["expires_at"])
    acknowledged = [event for event in closers if event.outcome == "ok"]
    sent = [event for event in closers if event.outcome != "refused"]
    kinds = {"captured": "capture", "released": "release"}
    violations = []
    if state == "expired":
        if closed_at < expires_at:
            violations.append(f"hold {hold_id}: expired {expires_at - closed_at} ms before its expiry")
        if acknowledged:
            violations.append(f"hold {hold_id}: expired, but a {acknowledged[0].kind} of it was acknowledged")
        return violations
    if closed_at >= expires_at:
        violations.append(f"hold {hold_id}: {state} {closed_at - expires_at} ms after its expiry")
    if not any(event.kind == kinds[state] for event in sent):
        violations.append(f"hold {hold_id}: {state}, but no {kinds[state]} of it was sent")
    late = [event for event in acknowledged if event.sent_at_ms > expires_at]
    if late:
        violations.append(f"hold {hold_id}: a {late[0].kind} sent {late[0].sent_at_ms - expires_at} ms after its "
                          "expiry was acknowledged")
    wrong = [event for event in acknowledged if event.kind != kinds[state]]
    if wrong:
        violations.append(f"hold {hold_id}: {state}, but a {wrong[0].kind} of it was acknowledged")
    captures = [event for event in acknowledged if event.kind == "capture"]
    if len(captures) > 1:
        violations.append(f"hold {hold_id}: {len(captures)} captures of it were acknowledged")
    if state == "captured" and captures and captures[0].captured_cents != parse_cents(hold["captured"]):
        violations.append(f"hold {hold_id}: captured {hold['captured']}, but the capture acknowledged "
                          f"{format_cents(captures[0].captured_cents)}")
    return violations


def expected_entries(event, account):
    """[(kind, cents, counterparty)] a hold, capture or release makes in account's statement if it applied."""
    origin, target = event.accounts
    if event.kind == "hold":
        return [("hold", event.amount_cents, target)] if account == origin else []
    hold_cents = event.held_cents
    if event.kind == "release":
        return [("hold_release", hold_cents, target)] if account == origin else []
    # What it asked for: a capture of unknown outcome applied (if at all) as asked.
    captured = event.amount_cents or hold_cents
    if account == target:
        return [("capture_in", captured, origin)]
    rest = [("hold_release", hold_cents - captured, target)] if captured < hold_cents else []
    return [("capture_out", captured, target), *rest]


def closing_violations(statements, events, held):
    """Each closed hold closed exactly once in its origin's statement, as its state says: by one capture or release
    that applied (its key there), or by one hold_expiry; none by the adversary's."""
    closers = {}
    for event in events:
        if event.kind in ("capture", "release"):
            closers.setdefault(event.hold_id, []).append(event)
    kinds = {"captured": "capture", "released": "release", "expired": "expiry"}
    violations = []
    for hold_id, hold in held.items():
        if hold is None or hold["state"] not in kinds or hold["origin"] not in statements:
            continue
        entries = statements[hold["origin"]]
        keys = {entry["idempotency_key"] for entry in entries}
        closed_by = [event.kind for event in closers.get(hold_id, []) if event.key in keys]
        closed_by += ["expiry" for entry in entries if entry["kind"] == "hold_expiry"
                      and entry["operation"] == f"expiry-{hold_id}"]
        if closed_by != [kinds[hold["state"]]]:
            violations.append(f"hold {hold_id}: {hold['state']}, but closed in its origin's statement by {closed_by}")
    return violations


def expiry_violations(account, entries, held):
    """Each expired hold of account's shows hold_expiry once in its statement; no other hold does."""
    violations, seen = [], {}
    for entry in entries:
        if entry["kind"] == "hold_expiry":
            hold_id = entry["operation"].removeprefix("expiry-")
            seen[hold_id] = seen.get(hold_id, 0) + 1
            hold = held.get(hold_id)
            if hold is None or hold["state"] != "expired" or hold["origin"] != account or \
                    parse_cents(hold["amount"]) != parse_cents(entry["amount"]):
                violations.append(f"{account}: entry {entry['seq']} expires hold {hold_id}, which did not so expire")
    for hold_id, hold in held.items():
        if hold is not None and hold["state"] == "expired" and hold["origin"] == account and seen.get(hold_id) != 1:
            violations.append(f"{account}: expired hold {hold_id} shows hold_expiry {seen.get(hold_id, 0)} times")
    return violations

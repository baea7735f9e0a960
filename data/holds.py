"""Holds: an amount of an account set aside for another, until it is captured, released or expires.

The business servers decide what a hold becomes (business/application/holds.py); the data tier keeps each hold
under its origin's lease and holds every store to one rule: a hold is placed once, held, and closed once — never
placed over another of its id, never closed twice, never changed once closed. A hold as the stores keep it:

  {"id": 32 hex digits, "origin": account, "target": account, "cents": amount set aside,
   "expires_at": Unix ms, "state": held | captured | released | expired, "captured": cents moved (0 unless
   captured), "closed_at": Unix ms or None while held, "origin_owner": client, "target_owner": client or None}
"""
from data.store import HoldConflict, HoldsExceedBalance
from shared.money import format_cents

HELD = "held"
CLOSED_STATES = ("captured", "released", "expired")
STATES = (HELD, *CLOSED_STATES)
FIELDS = ("id", "origin", "target", "cents", "expires_at", "state", "captured", "closed_at", "origin_owner",
          "target_owner")
# What a hold is placed with and keeps whatever it becomes.
FIXED = ("id", "origin", "target", "cents", "expires_at", "origin_owner", "target_owner")


def check_change(before, after):
    """HoldConflict unless after may follow before (None: no hold of that id yet): a new hold held, or a held one
    closed with all it was placed with."""
    if before is None:
        if after["state"] != HELD:
            raise HoldConflict(after["id"], "no such hold is held")
        return
    if before["state"] != HELD:
        raise HoldConflict(after["id"], f"it is {before['state']} already")
    if after["state"] == HELD or any(before[name] != after[name] for name in FIXED):
        raise HoldConflict(after["id"], "it is held already, as placed")
    check_closing(after)


def check_closing(closed):
    """HoldConflict unless a closed hold is expired once its expiry is reached, or captured or released before it."""
    if (closed["state"] == "expired") != (closed["closed_at"] >= closed["expires_at"]):
        raise HoldConflict(closed["id"], f"it cannot be {closed['state']} at {closed['closed_at']}")


def held_cents(holds):
    """What the held ones of holds set aside, together."""
    return sum(hold["cents"] for hold in holds if hold["state"] == HELD)


def still_held(held, changes, account):
    """account's held holds once changes apply, as a tuple; held: its held holds before them."""
    after = {hold["id"]: hold for hold in held}
    after.update({hold["id"]: hold for hold in changes if hold["origin"] == account})
    return tuple(hold for hold in after.values() if hold["state"] == HELD)


def require_cover(amounts, held_before, changes):
    """HoldsExceedBalance unless each written balance ({account: cents}) covers what its held holds set aside
    once changes apply; held_before: {account: its held holds before}."""
    for account, cents in amounts.items():
        if cents < held_cents(still_held(held_before.get(account, ()), changes, account)):
            raise HoldsExceedBalance(account)


def wire(hold):
    """A hold as the data server answers and takes it."""
    return {"id": hold["id"], "origin": hold["origin"], "target": hold["target"], "amount": format_cents(hold["cents"]),
            "expires_at_ms": hold["expires_at"], "state": hold["state"], "captured": format_cents(hold["captured"]),
            "closed_at_ms": hold["closed_at"], "origin_owner": hold["origin_owner"],
            "target_owner": hold["target_owner"]}

"""An account's history: one entry for each change a commit makes to its balance, numbered 1, 2, 3, … per account.

Both stores record a commit's entries in the same all-or-nothing step as its balances. This module says what an
entry is, checks that a commit's entries agree with the balances it writes, and numbers and stamps them. An entry:

  {"seq": n, "kind": k, "cents": amount, "balance": cents after it, "counterparty": account or None,
   "operation": operation id, "key": the client's Idempotency-Key or None, "at": Unix milliseconds}

Amounts are positive, their direction the kind's; an adjustment (a write that came without entries, such as the
seed's setAmount) carries its signed change. A hold's own entries (placed, released, expired) move no money: the
amount they set aside or give back changes what is available, and the balance stays (data/holds.py).
"""
from typing import NamedTuple

from data.store import HistoryMismatch
from shared.money import format_cents
from shared.timestamps import rfc3339

CREDITS = ("deposit", "transfer_in", "capture_in")
DEBITS = ("withdrawal", "transfer_out", "capture_out")
RESERVATIONS = ("hold", "hold_release", "hold_expiry")     # a hold's own entries: the balance stays
ADJUSTMENT = "adjustment"
# The kinds whose entry names the other account: of a transfer, of a capture, of a hold.
WITH_COUNTERPARTY = ("transfer_in", "transfer_out", "capture_in", "capture_out", *RESERVATIONS)
MAX_PAGE_ENTRIES = 100      # one read returns at most
DEFAULT_PAGE_ENTRIES = 20


class AccountState(NamedTuple):
    """An account as a commit finds it."""
    cents: int | None           # its balance; None if it does not exist yet
    last_seq: int               # its last history entry's seq; 0 if it has none


def change(entry):
    """The signed cents the entry adds to its account's balance."""
    if entry["kind"] in DEBITS:
        return -entry["cents"]
    if entry["kind"] in RESERVATIONS:
        return 0
    return entry["cents"]


def check_chain(account, entries, written):
    """Each of one account's entries (in commit order) must follow from the one before, the last end at written."""
    for before, after in zip(entries, entries[1:]):
        if before["balance"] + change(after) != after["balance"]:
            raise HistoryMismatch(f"the entries of {account} do not add up: a {after['kind']} of {after['cents']} "
                                  f"cents after a balance of {before['balance']} does not leave {after['balance']}")
    if entries and entries[-1]["balance"] != written:
        raise HistoryMismatch(f"the last entry of {account} does not end at the balance written")


def numbered(writes, entries, prior, operation, at):
    """The commit's entries, numbered on from each account's last and stamped with at (Unix ms).

    writes: {account: cents}; entries: {account: [entry without seq and at]}, checked with check_chain already;
    prior: {account: AccountState}. A written account without entries gets an adjustment entry,
    under operation (the commit's first operation id, or None). HistoryMismatch if an account's first entry does
    not follow from its balance before the commit.
    """
    recorded = []
    for account, cents in writes.items():
        before, seq = prior[account]
        own = entries.get(account)
        if own is None:
            if cents == (before or 0):
                continue
            own = [{"kind": ADJUSTMENT, "cents": cents - (before or 0), "balance": cents, "counterparty": None,
                    "operation": operation, "key": None}]
        elif (before or 0) + change(own[0]) != own[0]["balance"]:
            raise HistoryMismatch(f"the first entry of {account} does not follow from its balance before the commit")
        # Every balance is what its history adds up to: the caller checked the chain up to the balance written.
        assert own[-1]["balance"] == cents, f"the entries of {account} end at {own[-1]['balance']}, not {cents}"
        for entry in own:
            seq += 1
            recorded.append({"account": account, "seq": seq, **entry, "at": at})
    return recorded


def last_seqs(recorded, before):
    """{account: its last seq} of numbered entries; before: {account: last seq} they were numbered on from."""
    last = {}
    for entry in recorded:
        account = entry["account"]
        previous = last.get(account, before.get(account, 0))
        # An account's history has no gap and no repeat: each entry is numbered the one before it plus 1.
        assert entry["seq"] == previous + 1, f"entry {entry['seq']} of {account} follows seq {previous}"
        last[account] = entry["seq"]
    return last


def wire(entry):
    """An entry as the data server answers it (amounts as decimal strings, the time in RFC 3339, UTC)."""
    return {"seq": entry["seq"], "kind": entry["kind"], "amount": format_cents(entry["cents"]),
            "balance": format_cents(entry["balance"]), "counterparty": entry["counterparty"],
            "operation": entry["operation"], "idempotency_key": entry["key"],
            "at": rfc3339(entry["at"])}

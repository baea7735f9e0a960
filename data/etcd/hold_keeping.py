"""The etcd store's holds (data/holds.py): the parts of a transaction that read, place and close them.

A held hold is three keys, written and deleted together: k/a/{origin}/{id} (read with the origin's lock, so a lease
comes with its account's holds), k/i/{id} (found by id; the cap counts them) and k/x/{expiry}/{id} (found when
due). A closed one is k/c/{id}, under a lease of DATA_HOLD_RETENTION (records.py's span leases). Placing holds
only while no k/i/ or k/c/ key has its id; closing holds only while k/a/ holds it exactly as placed: a hold is
closed once, whichever data server asks.
"""
import json

from data import holds
from data.etcd.gateway import compare, count, decode, delete, get, get_before, kvs, put
from data.store import DueHold, HoldsFull, UnknownHold


def _value(hold):
    return json.dumps({name: hold[name] for name in holds.FIELDS}, separators=(",", ":"))


def _as_placed(hold):
    return {**hold, "state": holds.HELD, "captured": 0, "closed_at": None}


class HoldKeeping:
    def __init__(self, gateway, keys, records, settings, wall_clock):
        self._etcd, self._keys, self._records, self._wall_clock = gateway, keys, records, wall_clock
        self._open_limit = settings.open_holds_limit

    def ranges(self, accounts):
        """The reads of accounts' held holds, one each."""
        return [get(self._keys.held_holds(account), prefix=True) for account in accounts]

    @staticmethod
    def held(response):
        """The holds one of ranges' reads found, as a tuple."""
        return tuple(json.loads(decode(kv["value"])) for kv in kvs(response))

    def require_room(self, changes):
        """HoldsFull if placing changes' new holds would pass the cap."""
        placed = sum(1 for hold in changes if hold["state"] == holds.HELD)
        if not placed:
            return
        answer = self._etcd.txn(success=[get(self._keys.all_held(), prefix=True, count_only=True)], resend=True)
        held = count(answer["responses"][0])
        if held + placed > self._open_limit:
            raise HoldsFull(f"{held} holds are held, the most the bank may hold is {self._open_limit}")

    def txn_parts(self, changes):
        """(compares, puts and deletes) that apply changes, each hold as it is to be, in a commit's transaction."""
        checks, success = [], []
        for hold in changes:
            held_key, by_id = self._keys.held_hold(hold["origin"], hold["id"]), self._keys.held_by_id(hold["id"])
            expiry = self._keys.expiry(hold["expires_at"], hold["id"])
            if hold["state"] == holds.HELD:
                checks += [compare(by_id, "VERSION", "EQUAL", 0),
                           compare(self._keys.closed_hold(hold["id"]), "VERSION", "EQUAL", 0)]
                success += [put(held_key, _value(hold)), put(by_id, _value(hold)), put(expiry, hold["origin"])]
            else:
                holds.check_closing(hold)
                checks.append(compare(held_key, "VALUE", "EQUAL", _value(_as_placed(hold))))
                # Kept from when this data server closed it, as an operation record is from when it is made.
                lease = self._records.span_lease("holds", int(self._wall_clock()))
                success += [delete(held_key), delete(by_id), delete(expiry),
                            put(self._keys.closed_hold(hold["id"]), _value(hold), lease)]
        return checks, success

    def raise_conflict(self, changes):
        """HoldConflict for the first of changes that may not be applied as things are now; nothing if all may."""
        for hold in changes:
            try:
                before = self.get(hold["id"])
            except UnknownHold:
                before = None
            holds.check_change(before, hold)

    def get(self, hold_id):
        answer = self._etcd.txn(success=[get(self._keys.held_by_id(hold_id)), get(self._keys.closed_hold(hold_id))],
                                resend=True)
        found = [kv for response in answer["responses"] for kv in kvs(response)]
        if not found:
            raise UnknownHold(hold_id)
        return json.loads(decode(found[0]["value"]))

    def due(self, now_ms, limit):
        answer = self._etcd.txn(success=[get_before(self._keys.expiries(), self._keys.expiry(now_ms + 1), limit)],
                                resend=True)
        due = []
        for kv in kvs(answer["responses"][0]):
            expires_at, _, hold_id = decode(kv["key"])[len(self._keys.expiries()):].partition("/")
            due.append(DueHold(hold_id, decode(kv["value"]), int(expires_at)))
        return due

"""The embedded store's holds (data/holds.py): the held ones by id and by origin, the closed ones kept
DATA_HOLD_RETENTION, at most DATA_OPERATION_LIMIT of them."""
import bisect
import itertools

from data import holds
from data.embedded.records import RecordTable
from data.store import DueHold, HoldConflict, HoldsFull


class HoldTable:
    def __init__(self, settings, wall_clock):
        self._wall_clock = wall_clock
        self._open_limit = settings.open_holds_limit
        self._held = {}                 # hold id -> hold, each held one
        self._held_of = {}              # origin -> {hold id: hold}, its held ones
        # (expires_at, hold id) of each held one, in order: the business servers ask for the due ones a few times a
        # second, and are answered from its head, under the store's mutex, however many are held.
        self._by_expiry = []
        self._closed = RecordTable("closed hold", settings.hold_retention, settings.operation_limit)

    def held_of(self, account):
        return tuple(self._held_of.get(account, {}).values())

    def get(self, hold_id):
        """The hold as it is now, or None."""
        hold = self._held.get(hold_id)
        if hold is not None:
            return hold
        closed = self._closed.get(hold_id, self._wall_clock())
        return None if closed is None else {name: closed[name] for name in holds.FIELDS}

    def check(self, changes, writes):
        """HoldConflict or HoldsFull unless every change (a hold as it is to be) may be applied, together, by a
        commit of writes (its origin must be written, under its lease)."""
        for hold in changes:
            if hold["origin"] not in writes:
                raise HoldConflict(hold["id"], "its origin is not written under a lease in this commit")
            before = self._held.get(hold["id"])
            if before is None and self._closed.get(hold["id"], self._wall_clock()) is not None:
                raise HoldConflict(hold["id"], "it is closed already")
            holds.check_change(before, hold)
        placed = sum(1 for hold in changes if hold["state"] == holds.HELD)
        if placed and len(self._held) + placed > self._open_limit:
            raise HoldsFull(f"{len(self._held)} holds are held, the most the bank may hold is {self._open_limit}")
        closed = len(changes) - placed
        if closed:
            self._closed.require_room(closed, self._wall_clock())

    def stamp(self, changes):
        """The changes as the journal records them: a closed hold with when this data server closed it (Unix s),
        which its keeping runs from."""
        at = int(self._wall_clock())
        return [hold if hold["state"] == holds.HELD else {**hold, "at": at} for hold in changes]

    def apply(self, changes):
        """Record changes: as a commit or a snapshot's holds record has them."""
        for hold in changes:
            if hold["state"] == holds.HELD:
                self._held[hold["id"]] = hold
                self._held_of.setdefault(hold["origin"], {})[hold["id"]] = hold
                bisect.insort(self._by_expiry, (hold["expires_at"], hold["id"]))
                continue
            if self._held.pop(hold["id"], None) is not None:
                self._by_expiry.pop(bisect.bisect_left(self._by_expiry, (hold["expires_at"], hold["id"])))
            of_origin = self._held_of.get(hold["origin"], {})
            of_origin.pop(hold["id"], None)
            if not of_origin:
                self._held_of.pop(hold["origin"], None)
            self._closed.add({"at": hold["closed_at"] // 1000, **hold})

    def due(self, now_ms, limit):
        """Up to limit held holds expired by now_ms, soonest first, as [DueHold]."""
        due = itertools.takewhile(lambda expiry: expiry[0] <= now_ms, self._by_expiry)
        return [DueHold(hold_id, self._held[hold_id]["origin"], expires_at)
                for expires_at, hold_id in itertools.islice(due, limit)]

    def copy(self):
        """Every hold, held and closed (closed in the order they closed, with when), for a snapshot."""
        return [*self._held.values(), *self._closed.values()]

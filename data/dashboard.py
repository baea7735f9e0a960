"""The live dashboard: one page for operators, refreshed every second from an authenticated JSON view."""
import collections
import threading
import time
from typing import NamedTuple

from flask import Blueprint, current_app, jsonify, send_from_directory

from data import history
from shared.money import format_cents

RATE_WINDOW_SECONDS = 5             # operations per second are averaged over this long
MOST_LEASES = 50                    # leases listed; the count says how many there are in all
RECENT_REFUSALS = 20
RECENT_ENTRIES = 20                 # the latest history entries this data server recorded, bank-wide


class ActivityView(NamedTuple):
    rates: dict                 # business -> operations per second
    refusals: list              # the latest fencing refusals, newest first
    entries: list               # the latest history entries, newest first


class Activity:
    """Operations committed per business (a rate over the last seconds), the latest history entries and the latest
    fencing refusals."""

    def __init__(self, clock=time.time):
        self._clock = clock
        self._mutex = threading.Lock()
        self._seconds = collections.defaultdict(collections.Counter)   # business -> {whole second: operations}
        self._refusals = collections.deque(maxlen=RECENT_REFUSALS)
        self._entries = collections.deque(maxlen=RECENT_ENTRIES)

    def committed(self, business, operations, entries=()):
        with self._mutex:
            self._entries.extendleft(entries)
            counts = self._seconds[business]
            counts[int(self._clock())] += operations
            oldest = int(self._clock()) - RATE_WINDOW_SECONDS
            for second in [s for s in counts if s < oldest]:
                del counts[second]

    def refused(self, business, account, token):
        with self._mutex:
            self._refusals.appendleft({"at": self._clock(), "business": business, "account": account,
                                       "token": token})

    def view(self):
        """What this data server did lately, as an ActivityView."""
        with self._mutex:
            now = int(self._clock())
            # The current second is still filling: average over the whole seconds before it.
            rates = {business: sum(n for second, n in counts.items() if now - RATE_WINDOW_SECONDS <= second < now)
                     / RATE_WINDOW_SECONDS for business, counts in self._seconds.items()}
            return ActivityView(rates, list(self._refusals), list(self._entries))


def dashboard_blueprint(operator):
    """GET /dashboard (the page, no data in it) and GET /dashboard/state (the data, for operators only)."""
    dashboard = Blueprint("dashboard", __name__)

    @dashboard.get("/dashboard")
    def page():
        return send_from_directory(current_app.static_folder, "dashboard.html")

    @dashboard.get("/dashboard/state")
    @operator.login_required
    def state():
        view = current_app.extensions["bank.store"].view(MOST_LEASES)
        activity = current_app.extensions["bank.activity"].view()
        now = time.time()
        return jsonify(
            total=format_cents(view.total_cents), accounts=view.accounts, waiting=view.waiting,
            lease_count=view.lease_count,
            leases=[{"account": lease.account, "holder": lease.holder, "token": lease.token,
                     "seconds_left": round(lease.seconds_left, 2)} for lease in view.leases],
            operations_per_second={business: round(rate, 1) for business, rate in sorted(activity.rates.items())},
            refusals=[{**refusal, "seconds_ago": round(now - refusal["at"], 1)} for refusal in activity.refusals],
            entries=[{"account": entry["account"], **history.wire(entry)} for entry in activity.entries])

    return dashboard

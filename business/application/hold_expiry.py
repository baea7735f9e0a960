"""The bank's own expiry of holds: the holds past their expiry are asked of the data tier and each closed by a lock
cycle on its origin (holds.py closes every due hold of an account it leases), so that no hold stays held because
no one touched its account. Every business server's batcher runs one; two closing the same hold are one close,
for the data tier closes a hold once."""
import logging
import threading
import uuid

from business.application.errors import BankError
from business.application.operations import Operation
from business.application.ports import DataRefused, DataUnavailable

log = logging.getLogger("bank.business")

EXPIRY_PAUSE_SECONDS = 0.2      # between two looks for due holds: a hold is closed this soon after its expiry
DUE_PER_LOOK = 50               # due holds asked for at a time
LOOKS_IN_A_ROW = 10             # looks without a pause while each finds a full DUE_PER_LOOK


class HoldExpiry:
    def __init__(self, queue, hold_store, new_operation_id=lambda: uuid.uuid4().hex):
        self._queue, self._holds, self._new_operation_id = queue, hold_store, new_operation_id
        self._stopped = threading.Event()

    def close_due(self):
        """Close the holds due now, up to DUE_PER_LOOK of them; how many were asked to close."""
        try:
            due = self._holds.due(DUE_PER_LOOK)
        except (DataUnavailable, DataRefused) as error:
            log.warning("hold expiry: no due holds read: %s", error)
            return 0
        for hold in due:
            try:
                self._queue.submit(Operation("expire", hold.origin, operation_id=self._new_operation_id(),
                                             hold=hold.id))
            except BankError as refusal:
                log.warning("hold expiry: %s not closed now: %s", hold.id, refusal.code)
            except Exception:   # a bug in a lock cycle: the expiry of every other hold must go on
                log.exception("hold expiry: %s failed", hold.id)
        return len(due)

    def run(self):
        """Close due holds until stopped."""
        while not self._stopped.wait(EXPIRY_PAUSE_SECONDS):
            for _ in range(LOOKS_IN_A_ROW):
                if self.close_due() < DUE_PER_LOOK or self._stopped.is_set():
                    break

    def start(self):
        """Run in a daemon thread, which ends with its process or at stop()."""
        threading.Thread(target=self.run, name="hold-expiry", daemon=True).start()

    def stop(self):
        self._stopped.set()

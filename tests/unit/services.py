"""BankService on QueueService on the fakes, as the unit tests of both drive them."""
import threading

from business.application.bank_service import BankService, Caller
from business.application.queue_service import QueueService
from tests.helpers import FakeClock, InThread, wait_until
from tests.unit.fakes import FakeAccounts, FakeAmounts, FakeDataServer, FakeHistory, FakeHolds, FakeLocks

CLIENT = Caller("c")        # the client of every test's accounts, unless a test says otherwise


class Harness:
    """A bank on a fake data server, with a fake clock that the queue service's pauses move (and record)."""

    def __init__(self, accounts=None, queue_limit=100, batch_limit=50, lock_wait=2.0, locks=FakeLocks,
                 amounts=FakeAmounts):
        self.server = FakeDataServer(accounts)
        self.clock = FakeClock()
        self.wall_seconds = 1_800_000_000.0     # the wall clock holds expire by: moved by hand
        self.sleeps = []
        self.queues = QueueService(locks(self.server), amounts(self.server), lock_wait, queue_limit,
                                   batch_limit, holds_per_account=3, clock=self.clock, sleep=self._sleep,
                                   jitter=lambda: 0.5, wall_clock=lambda: self.wall_seconds)
        self.holds = FakeHolds(self.server, lambda: int(self.wall_seconds * 1000))
        self.bank = BankService(self.queues, FakeHistory(self.server), FakeAccounts(self.server),
                                max_amount_cents=1_000_000, hold_store=self.holds,
                                wall_clock=lambda: self.wall_seconds)

    def _sleep(self, seconds):
        self.sleeps.append(seconds)
        self.clock.advance(seconds)

    def behind_a_held_cycle(self, account, leader, followers, while_held=lambda: None):
        """Run leader and hold its lock cycle at the fake's gate; queue followers behind it one by one, in order;
        call while_held; open the gate. Each call is (function, *args); return their finished InThreads, leader
        first."""
        gate = self.server.gate = threading.Event()
        threads = [InThread(*leader)]
        assert self.server.acquire_entered.wait(10)
        for position, follower in enumerate(followers, start=1):
            threads.append(InThread(*follower))
            self.wait_pending(account, position)
        while_held()
        gate.set()
        for thread in threads:
            thread.join()
        return threads

    def behind_a_held_cycle_on_many_accounts(self, followers):
        """Hold a lock cycle on "lead"; queue followers (function, account, *args) one by one; open the gate;
        return the followers' finished InThreads."""
        gate = self.server.gate = threading.Event()
        leader = InThread(self.bank.deposit, "lead", 1, CLIENT)
        assert self.server.acquire_entered.wait(10)
        threads = []
        for function, account, *args in followers:
            threads.append(InThread(function, account, *args))
            self.wait_pending(account, sum(1 for _, other, *_ in followers[:len(threads)] if other == account))
        gate.set()
        for thread in [leader, *threads]:
            thread.join()
        return threads

    def wait_pending(self, account, count):
        wait_until(lambda: self.queues.pending(account) == count, 10, f"{count} operations never queued on {account}")


def balance_or_refusal(thread):
    """A finished InThread's receipt balance, or the type of its refusal."""
    outcome = thread.outcome()
    return outcome if isinstance(outcome, type) else outcome.balance_cents

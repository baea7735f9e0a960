"""A worker's BatcherQueue and a real Batcher on a Unix socket, the queue service behind it on the fakes: every
outcome and refusal crosses as it was, each worker thread keeps its connection, and a batcher that is gone,
dies mid-operation or never answers is a 503 within the bound, never a hang."""
import os
import socket
import threading
import time

import pytest

from business.application.errors import (
    AccountExists,
    AccountNotFound,
    AccountOwned,
    BalanceLimitExceeded,
    IdempotencyConflict,
    InsufficientFunds,
    ServiceUnavailable,
)
from business.application.operations import Operation, Outcome
from business.application.queue_service import QueueService
from business.batcher import Batcher, current_request_id, listen
from business.infra.batcher_client import BatcherQueue
from business.infra.batcher_wire import answer_line, parse_answer
from tests.helpers import InThread
from tests.unit.fakes import FakeAmounts, FakeDataServer, FakeLocks


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "run" / "batcher.sock")


def serve_until_shut(batcher):
    try:
        batcher.serve_forever()
    except OSError:
        pass            # its listener was shut: the batcher stops


@pytest.fixture
def serve_batcher(path):
    """serve_batcher(queue): a Batcher of queue listening on path, served from a thread; stopped after the test
    (its connections' threads end as their workers' connections close)."""
    running = []

    def serve(queue):
        listener = listen(path)
        running.append((listener, InThread(serve_until_shut, Batcher(queue, listener))))

    yield serve
    for listener, server in running:
        listener.shutdown(socket.SHUT_RDWR)
        server.result()
        listener.close()


@pytest.fixture
def batcher(serve_batcher):
    """A Batcher serving the queue service on fakes from a thread; its fake data server as .server."""
    server = FakeDataServer({"funded": 10_00})
    seen_request_ids = []

    class RecordingLocks(FakeLocks):
        def acquire_all(self, accounts, lookup=(), wait=0.0):
            seen_request_ids.append(current_request_id())
            return super().acquire_all(accounts, lookup, wait)

    queues = QueueService(RecordingLocks(server), FakeAmounts(server), 2.0, 100, 50)
    serve_batcher(queues)
    server.seen_request_ids = seen_request_ids
    return server


def deposit(account, cents, key=None):
    return Operation("deposit", account, cents, None, f"c:{key}" if key else f"op-{time.monotonic_ns()}", key, "c")


def test_outcomes_cross_as_they_were_and_carry_the_request_they_serve(batcher, path):
    queue = BatcherQueue(path, 5, request_id_source=lambda: "req-1")
    assert queue.submit(deposit("a", 150)).result == {"balance": 150}
    first = queue.submit(deposit("a", 50, key="k"))
    again = queue.submit(deposit("a", 50, key="k"))
    assert (first.result, first.replayed, again.result, again.replayed) == ({"balance": 200}, False,
                                                                             {"balance": 200}, True)
    with pytest.raises(InsufficientFunds):
        queue.submit(Operation("withdrawal", "funded", 20_00, None, "op-w", client="c"))
    with pytest.raises(AccountNotFound):
        queue.submit(Operation("withdrawal", "funded", 1, None, "op-x", client="mallory"))
    with pytest.raises(AccountNotFound):
        queue.submit(Operation("balance", "nobody", client="c"))
    # The caller crosses with the operation: an operator reads what is not its own.
    assert queue.submit(Operation("balance", "funded", client="ops", operator=True)).result == {"balance": 10_00,
                                                                                               "owner": "c",
                                                                                               "available": 10_00}
    with pytest.raises(IdempotencyConflict):
        queue.submit(deposit("a", 51, key="k"))
    assert batcher.accounts == {"funded": 10_00, "a": 200}
    assert set(batcher.seen_request_ids) == {"req-1"}


def test_every_refusal_the_queue_can_give_crosses_the_wire_with_its_code_and_retry_after():
    for refusal in (InsufficientFunds("no"), AccountNotFound("gone"), AccountExists("taken"), AccountOwned("owned"),
                    BalanceLimitExceeded("big"), IdempotencyConflict("other"),
                    ServiceUnavailable("queue_full", "many", 7)):
        crossed = parse_answer(answer_line(refusal))
        assert (type(crossed), crossed.code, crossed.message) == (type(refusal), refusal.code, refusal.message)
    assert parse_answer(answer_line(ServiceUnavailable("account_busy", "held", 3))).retry_after == 3


def test_worker_threads_at_once_each_keep_one_connection_and_every_deposit_counts(batcher, path):
    queue = BatcherQueue(path, 5)

    def deposits():
        for _ in range(25):
            queue.submit(deposit("shared", 1))

    for thread in [InThread(deposits) for _ in range(8)]:
        thread.result(30)
    assert batcher.accounts["shared"] == 200


def test_no_batcher_listening_is_503_batcher_unavailable_at_once(path):
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as refused:
        BatcherQueue(path, 5).submit(deposit("a", 1))
    assert refused.value.code == "batcher_unavailable" and time.monotonic() - started < 1


def test_a_connection_the_batcher_closed_since_the_last_operation_is_opened_again(path):
    listener, closed = listen(path), threading.Event()

    def answer_one_then_close():
        for balance in (1, 2):
            connection, _ = listener.accept()
            connection.recv(65536)
            connection.sendall(answer_line(Outcome({"balance": balance})))
            connection.close()
            closed.set()

    batcher = InThread(answer_one_then_close)
    queue = BatcherQueue(path, 5)
    assert queue.submit(deposit("a", 1)).result == {"balance": 1}
    assert closed.wait(5)
    assert queue.submit(deposit("a", 1)).result == {"balance": 2}
    batcher.result()
    listener.close()


@pytest.mark.parametrize("behaviour", ["closes after reading", "never answers", "answers garbage"])
def test_a_batcher_that_took_the_operation_and_did_not_answer_is_503_data_unavailable(path, behaviour):
    listener, answered = listen(path), threading.Event()

    def serve():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            if behaviour == "answers garbage":
                connection.sendall(b"{not json\n")
            elif behaviour == "never answers":
                answered.wait(10)       # past the worker's timeout (0.5 s): until the test is over

    batcher = InThread(serve)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as unknown:
        BatcherQueue(path, 0.5).submit(deposit("a", 1))
    # Its outcome is unknown, so not "nothing applied": the client retries with its key to learn it.
    assert unknown.value.code == "data_unavailable" and time.monotonic() - started < 2
    answered.set()
    batcher.result()
    listener.close()


def test_a_line_that_is_no_operation_ends_that_connection_only(batcher, path):
    stranger = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stranger.connect(path)
    stranger.sendall(b'{"operation": "all the money"}\n')
    assert stranger.recv(100) == b""
    stranger.close()
    assert BatcherQueue(path, 5).submit(deposit("a", 1)).result == {"balance": 1}


def test_a_bug_behind_the_batcher_is_answered_as_an_unknown_outcome(path, serve_batcher):
    class BrokenQueue:
        def submit(self, operation):
            raise RuntimeError("a bug")

    serve_batcher(BrokenQueue())
    with pytest.raises(ServiceUnavailable) as unknown:
        BatcherQueue(path, 5).submit(deposit("a", 1))
    assert unknown.value.code == "data_unavailable"


def test_the_socket_is_in_a_folder_only_its_user_may_enter(path):
    listen(path).close()
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700

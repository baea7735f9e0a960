"""Which adapters the bank's service gets: the one place the application and the infrastructure are joined."""
import os

from business.application.bank_service import BankService, HoldLimits
from business.application.hold_expiry import HoldExpiry
from business.application.queue_service import QueueService
from business.infra.account_repository import HttpAccountRepository
from business.infra.amount_repository import HttpAmountRepository
from business.infra.batcher_client import BatcherQueue
from business.infra.batcher_wire import SOCKET_ENV
from business.infra.data_client import DataServerClient
from business.infra.history_repository import HttpHistoryRepository
from business.infra.hold_repository import HttpHoldRepository
from business.infra.lock_repository import HttpLockRepository
from business.infra.metrics import PrometheusQueueObserver


def data_client(settings, request_id_source):
    """A client of settings' data servers; request_id_source names the request each data call serves."""
    return DataServerClient(settings.data_urls, settings.business_id, settings.data_token, settings.data_timeout,
                            request_id_source, settings.data_tls)


def queue_service(settings, request_id_source, client=None):
    """The lock cycles of one process: a worker's own, or its server's batcher's."""
    client = client or data_client(settings, request_id_source)
    return QueueService(HttpLockRepository(client), HttpAmountRepository(client), settings.lock_wait,
                        settings.queue_limit, settings.batch_limit, settings.holds_per_account,
                        observer=PrometheusQueueObserver())


def hold_expiry(settings, queue, request_id_source):
    """The bank's own expiry of the holds past theirs, into queue: run by each business server's batcher, or by
    each worker of a server without one."""
    return HoldExpiry(queue, _hold_store(data_client(settings, request_id_source)))


def _hold_store(client):
    return HttpHoldRepository(client, HttpAmountRepository(client))


def batcher_reply_timeout(settings):
    """How long a worker waits for the batcher's answer: an operation's turn in the line (a lock cycle before it,
    set aside for up to LOCK_WAIT), then its own lock request and commit, each a data call that may fail over."""
    return 2 * settings.lock_wait + 4 * settings.data_timeout + 1


def batcher_socket():
    """The socket of the batcher the gunicorn master started for this server; None (a test's app): batch here."""
    return os.environ.get(SOCKET_ENV)


def bank_service(settings, request_id_source=lambda: None, batcher_socket=None):
    """(the BankService, None) if its operations go to the server's batcher at batcher_socket; (the BankService,
    the HoldExpiry of this process's own queue, not started) if None: they go to this process's own lock cycles."""
    client = data_client(settings, request_id_source)
    if batcher_socket:
        queues, expiry = BatcherQueue(batcher_socket, batcher_reply_timeout(settings), request_id_source), None
    else:
        queues = queue_service(settings, request_id_source, client)
        expiry = hold_expiry(settings, queues, request_id_source)
    return BankService(queues, HttpHistoryRepository(client), HttpAccountRepository(client), settings.max_amount_cents,
                       settings.client_tokens.values(),
                       hold_store=_hold_store(client),
                       hold_limits=HoldLimits(settings.hold_default_seconds, settings.hold_max_seconds)), expiry

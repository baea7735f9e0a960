"""Which adapters the bank's service gets: the one place the application and the infrastructure are joined."""
from business.application.bank_service import BankService
from business.application.queue_service import QueueService
from business.infra.amount_repository import HttpAmountRepository
from business.infra.data_client import DataServerClient
from business.infra.history_repository import HttpHistoryRepository
from business.infra.lock_repository import HttpLockRepository
from business.infra.metrics import PrometheusQueueObserver


def bank_service(settings, request_id_source=lambda: None):
    """The BankService on settings' data servers; request_id_source names the request each data call serves."""
    data_client = DataServerClient(settings.data_urls, settings.business_id, settings.data_token,
                                   settings.data_timeout, request_id_source, settings.data_tls)
    queues = QueueService(HttpLockRepository(data_client), HttpAmountRepository(data_client), settings.lock_wait,
                          settings.queue_limit, settings.batch_limit, observer=PrometheusQueueObserver())
    return BankService(queues, HttpHistoryRepository(data_client), settings.max_amount_cents)

"""A business server's own Prometheus metrics, summed over its workers: the queue service's reports, 503s."""
from prometheus_client import Counter, Gauge, Histogram

from business.application.ports import QueueObserver

QUEUE_DEPTH = Gauge("bank_business_queue_depth", "Operations waiting for a lock cycle", multiprocess_mode="livesum")
BATCH_SIZE = Histogram("bank_business_batch_size", "Operations applied in one lock cycle",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 100))
LOCK_CYCLES = Counter("bank_business_lock_cycles_total", "Lock cycles run")
RETRIES = Counter("bank_business_lock_retries_total", "Lock requests sent again after their accounts stayed held")
UNAVAILABLE = Counter("bank_business_unavailable_total", "503 answers, by error code", ["code"])


class PrometheusQueueObserver(QueueObserver):
    def waiting(self, change):
        QUEUE_DEPTH.inc(change)

    def lock_cycle(self, operations):
        LOCK_CYCLES.inc()
        BATCH_SIZE.observe(operations)

    def retry(self):
        RETRIES.inc()

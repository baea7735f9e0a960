"""etcd's v3 JSON gateway (POST /v3/kv/txn, /v3/lease/...): keys and values travel base64-encoded.

The request builders below make the parts of a transaction; EtcdGateway sends them to a member.
"""
import base64
import json

from data.store import StoreFull, StoreUnavailable
from shared.failover import FailoverPools, NotAnswered

# etcd's answer to any write once its database is at --quota-backend-bytes (its alarm stays on until disarmed).
NO_SPACE = "etcdserver: mvcc: database space exceeded"
# etcd's answer to a transaction that puts a key under a lease revoked or expired since: refused whole.
LEASE_NOT_FOUND = "etcdserver: requested lease not found"


class LeaseGone(StoreUnavailable):
    """A transaction put a key under a lease that is gone: etcd refused all of it, nothing was applied."""


class EtcdGateway:
    """etcd's v3 JSON gateway over pools of keep-alive connections, one per member."""

    def __init__(self, endpoints, timeout, tls=None):
        self._members = FailoverPools(endpoints, tls=tls)
        self.timeout = timeout      # seconds for each call, at most

    def call(self, path, body, resend=False, timeout=None, absent_ok=False):
        """One request to a member (shared/failover.py says which); StoreUnavailable if none answered.

        resend: the request changes nothing, or nothing twice, so a member that took it and failed is followed by
        the next. timeout: seconds for it, if fewer than ETCD_TIMEOUT. absent_ok: etcd's 404 (what the request
        names is gone) is an answer too.
        """
        try:
            response, answer = self._members.send("POST", path, json.dumps(body).encode(),
                                                  {"Content-Type": "application/json"},
                                                  min(self.timeout, timeout or self.timeout), resend)
        except NotAnswered as error:
            raise StoreUnavailable(f"etcd: {error}") from None
        if response.status == 429 and answer.get("error") == NO_SPACE:
            raise StoreFull(f"etcd's database is at its quota: {NO_SPACE}")
        if response.status == 404 and answer.get("error") == LEASE_NOT_FOUND and not absent_ok:
            raise LeaseGone(f"etcd answered {path}: {LEASE_NOT_FOUND}; nothing was applied")
        if response.status != 200 and not (absent_ok and response.status == 404):
            raise StoreUnavailable(f"etcd answered {path} with {response.status} {answer.get('error')}")
        return answer

    def txn(self, compare=(), success=(), failure=(), resend=False, timeout=None):
        return self.call("/v3/kv/txn", {"compare": list(compare), "success": list(success),
                                        "failure": list(failure)}, resend, timeout)

    def grant(self, seconds, timeout=None):
        """A new etcd lease of at least one second; its id."""
        # Sent again freely: a lease granted twice leaves one unused, which expires with nothing under it.
        return self.call("/v3/lease/grant", {"TTL": max(1, round(seconds))}, True, timeout)["ID"]

    def revoke(self, lease):
        """End the lease and delete every key under it; one already gone is no error."""
        self.call("/v3/lease/revoke", {"ID": lease}, resend=True, absent_ok=True)

    def time_left(self, lease):
        """Whole seconds the lease has left; 0 once it is gone."""
        return max(0, int(self.call("/v3/lease/timetolive", {"ID": lease}, resend=True).get("TTL", 0)))


def encode(text):
    return base64.b64encode(text.encode()).decode()


def decode(encoded):
    return base64.b64decode(encoded).decode()


def prefix_end(prefix):
    """The first key after every key that starts with prefix."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def get(key, prefix=False, count_only=False, first_created=False):
    request = {"key": encode(key)}
    if prefix:
        request["range_end"] = encode(prefix_end(key))
    if count_only:
        request["count_only"] = True
    if first_created:
        request.update(sort_target="CREATE", sort_order="ASCEND", limit=1)
    return {"request_range": request}


def get_newest(prefix, below, limit):
    """Up to limit keys under prefix that sort before the key below (None: all), the last first."""
    end = below or prefix_end(prefix)
    return {"request_range": {"key": encode(prefix), "range_end": encode(end), "limit": limit, "sort_target": "KEY",
                              "sort_order": "DESCEND"}}


def get_after(prefix, after, limit):
    """Up to limit keys under prefix that sort after the key after (None: all), the first first."""
    start = prefix if after is None else after + "\0"
    return {"request_range": {"key": encode(start), "range_end": encode(prefix_end(prefix)), "limit": limit,
                              "sort_target": "KEY", "sort_order": "ASCEND"}}


def get_before(prefix, end, limit):
    """Up to limit keys under prefix that sort before the key end, the first first."""
    return {"request_range": {"key": encode(prefix), "range_end": encode(end), "limit": limit,
                              "sort_target": "KEY", "sort_order": "ASCEND"}}


def put(key, value, lease=None):
    request = {"key": encode(key), "value": encode(value)}
    if lease:
        request["lease"] = lease
    return {"request_put": request}


def delete(key):
    return {"request_delete_range": {"key": encode(key)}}


def delete_from_to(first, last):
    """Delete the keys from first to last, both included."""
    return {"request_delete_range": {"key": encode(first), "range_end": encode(last + "\0")}}


def nested(compare, success, failure=()):
    """A transaction inside a transaction: its success applies only where its own compare holds, its failure
    where it does not."""
    return {"request_txn": {"compare": list(compare), "success": list(success), "failure": list(failure)}}


def compare(key, target, result, value):
    field = {"CREATE": "create_revision", "MOD": "mod_revision", "VALUE": "value", "VERSION": "version"}[target]
    return {"key": encode(key), "target": target, "result": result,
            field: encode(value) if target == "VALUE" else str(value)}


def no_key_under(prefix):
    """A compare that holds while no key starts with prefix."""
    return {"key": encode(prefix), "range_end": encode(prefix_end(prefix)), "target": "VERSION", "result": "EQUAL",
            "version": "0"}


def kvs(response):
    """The key-values of one range response of a transaction."""
    return response.get("response_range", {}).get("kvs", [])


def count(response):
    return int(response["response_range"].get("count", 0))

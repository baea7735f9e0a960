"""JSON over HTTP to one of several equivalent servers, keep-alive pooled, moving on only when that is safe."""
import json

import urllib3


class NotAnswered(Exception):
    """No server answered: none took the connection, or the one that did failed after the request was sent."""


class FailoverPools:
    """Sends to the server that answered last, or the next when it takes no connection (nothing was sent, so
    moving on is always safe). One that took a request and failed is not asked again for it: what it did is
    unknown, so the caller decides whether the request may be sent again — and that goes to the next server."""

    def __init__(self, base_urls, connections=16):
        # Thread-safe; no retries inside urllib3, for the same reason.
        self._pools = [urllib3.connection_from_url(url, maxsize=connections, block=False, retries=False)
                       for url in base_urls]
        self._current = 0

    def send(self, method, url, body, headers, timeout):
        """(response, decoded JSON body); NotAnswered if no server answered."""
        first = self._current
        for attempt in range(len(self._pools)):
            index = (first + attempt) % len(self._pools)
            try:
                response = self._pools[index].urlopen(method, url, body=body, headers=headers, retries=False,
                                                      timeout=urllib3.Timeout(total=timeout))
                payload = json.loads(response.data)
            except urllib3.exceptions.ConnectTimeoutError:
                continue
            except (urllib3.exceptions.HTTPError, ValueError) as error:
                self._current = (index + 1) % len(self._pools)
                raise NotAnswered(f"server {index + 1} {method} {url}: {type(error).__name__}") from None
            # A server that fails (its own store unreachable, say) is not the first one asked next time.
            self._current = index if response.status < 500 else (index + 1) % len(self._pools)
            return response, payload
        raise NotAnswered(f"no server took a connection for {method} {url}")

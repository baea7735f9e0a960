"""How a call to the data server can fail, apart from the answers each repository turns into its own errors."""


class DataUnavailable(Exception):
    """The data server did not answer in time, refused the connection or failed (5xx)."""


class IdempotencyStoreFull(Exception):
    """The data server holds as many operation records as it may: the commit was refused, nothing applied."""

    def __init__(self, retry_after):
        super().__init__("the data server's operation records are full")
        self.retry_after = retry_after


class DataRefused(Exception):
    """The data server answered 4xx to a request this client built: a bug, or a lease that ran out."""

    def __init__(self, status, body):
        super().__init__(f"data server answered {status}: {body.get('error')}: {body.get('message')}")
        self.status, self.code = status, body.get("error")

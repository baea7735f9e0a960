"""How a call to the data server can fail, apart from the answers each repository turns into its own errors."""


class DataUnavailable(Exception):
    """The data server did not answer in time, refused the connection or failed (5xx)."""


class DataRefused(Exception):
    """The data server answered 4xx to a request this client built: a bug, or a lease that ran out."""

    def __init__(self, status, body):
        super().__init__(f"data server answered {status}: {body.get('error')}: {body.get('message')}")
        self.status, self.code = status, body.get("error")

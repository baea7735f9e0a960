"""Business servers: the bank API over the data server."""

"""Fencing tokens: they only grow and never repeat, across restarts and OS crashes too."""

FENCE_BLOCK_TOKENS = 10_000     # reserved in the journal at a time, so a lock costs no fsync


class FencingTokens:
    """The embedded store's tokens: blocks of them are reserved in the journal and synced, whatever the fsync
    policy, before any is handed out."""

    def __init__(self, journal):
        self._journal = journal
        self._last = 0
        self.reserved = 0

    def restore(self, upto):
        self.reserved = max(self.reserved, upto)
        self._last = self.reserved

    def next(self):
        token = self._last + 1
        if token > self.reserved:
            reserved = token + FENCE_BLOCK_TOKENS
            self._journal.sync(self._journal.append({"t": "fence", "upto": reserved}), force=True)
            self.reserved = reserved
        # Above every token before it, and reserved on disk: after a restart every token is above it too.
        assert self._last < token <= self.reserved, f"token {token} after {self._last}, {self.reserved} reserved"
        self._last = token
        return token

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
        if self._last + 1 > self.reserved:
            reserved = self._last + 1 + FENCE_BLOCK_TOKENS
            self._journal.sync(self._journal.append({"t": "fence", "upto": reserved}), force=True)
            self.reserved = reserved
        self._last += 1
        return self._last

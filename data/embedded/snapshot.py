"""What a compaction writes: the embedded store's whole state as journal records, a chunk at a time."""
import itertools
from typing import NamedTuple

from data.embedded.journal import SNAPSHOT_CHUNK_ITEMS


class SnapshotState(NamedTuple):
    """The store's state as copied under its mutex."""
    fence: int                  # the fencing tokens reserved so far
    accounts: dict              # account -> cents
    seqs: dict                  # account -> its last history entry's seq
    owners: dict                # account -> its owner (accounts from before owners have none)
    operations: list            # the operation records
    holds: list                 # every hold kept, held and closed (data/embedded/hold_table.py)


def snapshot_records(state):
    """The journal records that rebuild state: the fence, the accounts with their seqs and owners, the records, the
    holds."""
    yield {"t": "fence", "upto": state.fence}
    items = iter(state.accounts.items())
    for _ in range(0, len(state.accounts), SNAPSHOT_CHUNK_ITEMS):
        chunk = dict(itertools.islice(items, SNAPSHOT_CHUNK_ITEMS))
        record = {"t": "accounts", "a": chunk}
        numbered = {account: state.seqs[account] for account in chunk if account in state.seqs}
        if numbered:
            record["s"] = numbered
        owned = {account: state.owners[account] for account in chunk if account in state.owners}
        if owned:
            record["n"] = owned
        yield record
    for start in range(0, len(state.operations), SNAPSHOT_CHUNK_ITEMS):
        yield {"t": "operations", "o": state.operations[start:start + SNAPSHOT_CHUNK_ITEMS]}
    for start in range(0, len(state.holds), SNAPSHOT_CHUNK_ITEMS):
        yield {"t": "holds", "k": state.holds[start:start + SNAPSHOT_CHUNK_ITEMS]}

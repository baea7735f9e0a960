"""The stores' assertions fire when the invariant they guard is broken on purpose."""
import pytest

from data import history
from data.embedded.fencing import FencingTokens
from data.embedded.journal import MemoryJournal


def test_fencing_tokens_grow_and_a_token_beyond_the_reservation_trips_an_assertion(monkeypatch):
    tokens = FencingTokens(MemoryJournal())
    assert [tokens.next() for _ in range(3)] == [1, 2, 3]
    broken = FencingTokens(MemoryJournal())
    # A reservation that falls short of the token it was made for: after a restart, that token could repeat.
    monkeypatch.setattr("data.embedded.fencing.FENCE_BLOCK_TOKENS", -2)
    with pytest.raises(AssertionError, match="reserved"):
        broken.next()


def test_a_gap_in_an_accounts_history_trips_an_assertion():
    assert history.last_seqs([{"account": "a", "seq": 3}, {"account": "a", "seq": 4}], {"a": 2}) == {"a": 4}
    with pytest.raises(AssertionError, match="follows seq 2"):
        history.last_seqs([{"account": "a", "seq": 4}], {"a": 2})


def test_entries_that_do_not_end_at_the_balance_written_trip_an_assertion():
    deposit = {"kind": "deposit", "cents": 10, "balance": 10, "counterparty": None, "operation": "op", "key": None}
    with pytest.raises(AssertionError, match="end at 10, not 20"):
        history.numbered({"a": 20}, {"a": [deposit]}, {"a": history.AccountState(0, 0)}, "op", 0)


"""Who owns each account of the embedded store, and each owner's accounts in id order, for a paged listing."""
import bisect

from data.store import OwnerConflict


class AccountOwners:
    def __init__(self):
        self._owner_of = {}         # account -> owner; an account from before owners has none
        self._accounts_of = {}      # owner -> its accounts, sorted

    def owner(self, account):
        return self._owner_of.get(account)

    def new_owners(self, writes):
        """{account: owner} of writes ({account: Write}) that give an account its first owner; OwnerConflict if a
        write names another owner than its account's."""
        new = {}
        for account, write in writes.items():
            current = self._owner_of.get(account)
            if write.owner is not None and current is None:
                new[account] = write.owner
            elif write.owner is not None and write.owner != current:
                raise OwnerConflict(account)
        return new

    def add(self, owners):
        """Record {account: owner}, each account's first owner (or the one it has, as a journal replays)."""
        for account, owner in owners.items():
            current = self._owner_of.get(account)
            # An account's owner is for good: nothing records a second one.
            assert current in (None, owner), f"account {account} of {current} given to {owner}"
            if current is None:
                self._owner_of[account] = owner
                bisect.insort(self._accounts_of.setdefault(owner, []), account)

    def page(self, owner, after, limit):
        """Up to limit of owner's accounts with an id after `after` (None: from the first), in id order."""
        accounts = self._accounts_of.get(owner, [])
        start = 0 if after is None else bisect.bisect_right(accounts, after)
        return accounts[start:start + limit]

    def copy(self):
        return dict(self._owner_of)

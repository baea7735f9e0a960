"""An account's a/ value in etcd: its balance, its last history entry's seq and its owner, as one string, so that
one compare on it holds all three (data/etcd/store.py)."""
from data import history
from data.store import OwnerConflict


def amount_value(cents, last_seq, owner):
    """An a/ key's value: the balance, the account's last history entry's seq and its owner, if it has one."""
    return f"{cents} {last_seq}" if owner is None else f"{cents} {last_seq} {owner}"


def _parts(value):
    """An a/ value as read, split: "cents seq owner"; "cents seq" as written before owners, "cents" before history."""
    cents, seq, owner = (value.split(" ") + [None, None])[:3]
    return int(cents), int(seq or 0), owner


def account_state(value):
    """The AccountState of an a/ value as read (None: no key)."""
    if value is None:
        return history.AccountState(None, 0)
    cents, seq, _ = _parts(value)
    return history.AccountState(cents, seq)


def cents_and_owner(value):
    """(cents, owner) of an a/ value as read; (None, None): no such account."""
    if value is None:
        return None, None
    cents, _, owner = _parts(value)
    return cents, owner


def owners_after(writes, prior):
    """{account: its owner once writes ({account: Write}) apply over prior ({account: a/ value or None})}: a write
    gives an account without one its owner; OwnerConflict if it names another than the account's."""
    owners = {}
    for account, write in writes.items():
        current = cents_and_owner(prior[account])[1]
        if write.owner is not None and current not in (None, write.owner):
            raise OwnerConflict(account)
        owners[account] = current or write.owner
    return owners

"""Where the etcd store keeps each thing, under ETCD_PREFIX (data/etcd/store.py says what each key holds).

Every key the store, its records, lines and groups read or write is spelled here and nowhere else; a method with
no argument names the prefix all the keys of one kind share.
"""

SEQ_DIGITS = 12             # a history entry's seq in its key, zero-padded so that the keys sort as the seqs do


class EtcdKeys:
    def __init__(self, prefix):
        self.prefix = prefix

    def amounts(self):
        return f"{self.prefix}a/"

    def amount(self, account):
        return f"{self.amounts()}{account}"

    def owned(self, owner):
        """The prefix of owner's accounts: one empty key each, written with the account's first owner."""
        return f"{self.prefix}c/{owner}/"

    def owned_account(self, owner, account):
        return f"{self.owned(owner)}{account}"

    def account_of_owned(self, owner, key):
        """The account an owned-account key (as read back) is for."""
        return key[len(self.owned(owner)):]

    def locks(self):
        return f"{self.prefix}l/"

    def lock(self, account):
        return f"{self.locks()}{account}"

    def grant(self, account):
        """The call (the caller's id for its request) the lock on account was granted to, under the lock's lease."""
        return f"{self.prefix}g/{account}"

    def account_of_lock(self, key):
        """The account a lock's key (as read back) is for."""
        return key[len(self.locks()):]

    def line(self, account):
        return f"{self.prefix}q/{account}/"

    def place(self, account, me):
        return f"{self.line(account)}{me}"

    def waiters(self):
        return f"{self.prefix}w/"

    def waiter(self, me):
        return f"{self.waiters()}{me}"

    def all_entries(self):
        return f"{self.prefix}h/"

    def entries(self, account):
        return f"{self.all_entries()}{account}/"

    def account_of_entry(self, key):
        """The account a history entry's key (as read back) is for."""
        return key[len(self.all_entries()):].rpartition("/")[0]

    def entry(self, account, seq):
        return f"{self.entries(account)}{seq:0{SEQ_DIGITS}d}"

    @staticmethod
    def seq_of_entry(key):
        """The seq of a history entry's key (as read back)."""
        return int(key.rpartition("/")[2])

    def records(self, keyed):
        """The prefix of the keyed operation records (keyed) or of the retry records."""
        return f"{self.prefix}o/{'k' if keyed else 'r'}/"

    def record(self, op_id, keyed):
        return f"{self.records(keyed)}{op_id}"

    def relay(self):
        """The data server relaying history to the statement store (relay.py)."""
        return f"{self.prefix}r/relay"

    def relay_progress(self):
        return f"{self.prefix}r/progress"

    def relay_alarm(self):
        return f"{self.prefix}r/alarm"

    def quota(self):
        return f"{self.prefix}quota"

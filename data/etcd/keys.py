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

    def held_holds(self, origin):
        """The prefix of origin's held holds: k/a/{origin}/{hold id}, each the hold (data/holds.py)."""
        return f"{self.prefix}k/a/{origin}/"

    def held_hold(self, origin, hold_id):
        return f"{self.held_holds(origin)}{hold_id}"

    def all_held(self):
        """The prefix of every held hold by its id: k/i/{hold id}, the hold again."""
        return f"{self.prefix}k/i/"

    def held_by_id(self, hold_id):
        return f"{self.all_held()}{hold_id}"

    def expiries(self):
        """The prefix of the held holds by expiry: k/x/{expires_at ms in 15 digits}/{hold id}, its origin."""
        return f"{self.prefix}k/x/"

    def expiry(self, expires_at_ms, hold_id=""):
        return f"{self.expiries()}{expires_at_ms:015d}/{hold_id}"

    def closed_hold(self, hold_id):
        """A closed hold, under the keyed records' lease: kept as long as they are."""
        return f"{self.prefix}k/c/{hold_id}"

    def quota(self):
        return f"{self.prefix}quota"

"""Where the etcd store keeps each thing, under ETCD_PREFIX (data/etcd/store.py says what each key holds)."""


class EtcdKeys:
    def __init__(self, prefix):
        self.prefix = prefix

    def amount(self, account):
        return f"{self.prefix}a/{account}"

    def lock(self, account):
        return f"{self.prefix}l/{account}"

    def line(self, account):
        return f"{self.prefix}q/{account}/"

    def place(self, account, me):
        return f"{self.line(account)}{me}"

    def waiter(self, me):
        return f"{self.prefix}w/{me}"

    def entries(self, account):
        return f"{self.prefix}h/{account}/"

    def quota(self):
        return f"{self.prefix}quota"

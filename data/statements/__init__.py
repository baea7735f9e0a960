"""The statement store: history entries kept for good in PostgreSQL, relayed there out of etcd."""

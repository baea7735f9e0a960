"""The store on an etcd cluster: any number of data servers serve one bank kept in etcd."""

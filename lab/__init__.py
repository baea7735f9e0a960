"""The partition lab: the bank on simulated hosts (network namespaces) under a nemesis, checked as it runs."""

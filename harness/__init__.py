"""What the tests and the benchmark share: starting the system's real processes and always stopping them."""

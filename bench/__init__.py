"""The benchmark: make bench."""

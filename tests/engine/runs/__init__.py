"""Runs: counts, incremental windows, transient failures, the lease."""

"""End-to-end benchmark of the sync: real OpenSearch in, real PostgreSQL out.

`python -m benchmarks.bench` (or `make bench`) is the driver. Each measured
job runs in a child process of its own (`python -m benchmarks.job`), so its
wall time and peak RSS are that process's alone. Benchmarks are not tests:
nothing here asserts on time.
"""

"""The five typed columns the benchmark syncs beside `source` (sample events, rtarf_sync/sample.py)."""

from __future__ import annotations

from config import ColumnSpec

BENCH_COLUMNS = (
    ColumnSpec("source_ip", "source.ip", "inet"),
    ColumnSpec("severity", "event.severity", "smallint"),
    ColumnSpec("rule_name", "rule.name", "text", index=True),
    ColumnSpec("tags", "tags", "text[]"),
    ColumnSpec("seen_at", "event.ingested", "timestamptz"),
)

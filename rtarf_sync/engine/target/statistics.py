"""Fresh planner statistics after a bulk load.

PostgreSQL plans from statistics that autovacuum refreshes some time after a large change (and
never, for a partitioned table's parent). Until then, after a first load, the planner takes the
target for nearly empty: the counts of verification and fingerprints sort on disk instead of
hashing, and joins pick nested loops. A run that inserted at least ANALYZE_MIN_ROWS rows and at
least ANALYZE_SHARE of what the statistics say the table held analyses the target's own columns
before it ends: the key, the time, the version and `deleted_at`, the ones the service's queries
filter, group and join on. `source` and the typed columns are left to autovacuum: sampling them
costs the most, and no query of the service plans on them.
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from rtarf_sync.engine.target.tables import Tables

log = logging.getLogger("rtarf_sync.sink")

ANALYZE_MIN_ROWS = 10_000
ANALYZE_SHARE = 0.2
_ANALYSED = ("es_index", "es_id", "event_timestamp", "es_seq_no", "es_primary_term", "deleted_at")


def refresh_statistics(engine: sa.Engine, tables: Tables, inserted: int) -> bool:
    """Analyse the target after a run that inserted `inserted` rows, when that is a large share of it."""
    if inserted < ANALYZE_MIN_ROWS:
        return False
    target = tables.target
    with engine.connect() as connection:
        name = connection.dialect.identifier_preparer.format_table(target)
        known = connection.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:name)"), {"name": name}
        ).scalar()
        if known is not None and known >= 0 and inserted < ANALYZE_SHARE * known:
            return False  # -1: never analysed (PostgreSQL 14 and later)
        columns = ", ".join(connection.dialect.identifier_preparer.quote(column) for column in _ANALYSED)
        began = time.perf_counter()
        connection.exec_driver_sql(f"ANALYZE {name} ({columns})")
        connection.commit()
    log.info(
        "Analysed %s after %d inserted rows (the statistics knew of %s) in %.2f s",
        target.name,
        inserted,
        "none" if known is None or known < 0 else f"{int(known)}",
        time.perf_counter() - began,
    )
    return True

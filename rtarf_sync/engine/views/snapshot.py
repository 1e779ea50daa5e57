"""The lasting sync state in one query: last success, last run, cursor, dead letters, verification, lease.

Metrics and the status route read these from PostgreSQL rather than from the
process, so a process that has just started reports the truth. One round trip
of scalar subqueries, each served by an index of the state tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from rtarf_sync.engine.target.cursor_store import CursorStore
from rtarf_sync.engine.target.tables import Tables, is_missing_table

_FINISHED_OK = ("success", "partial")


@dataclass(frozen=True)
class StoredState:
    """What PostgreSQL holds about one (source index setting, target table)."""

    last_success_at: datetime | None = None
    last_run_at: datetime | None = None
    cursor: datetime | None = None
    dead_letters_unresolved: int = 0
    lease_held: bool = False
    verified_at: datetime | None = None
    verify_source_documents: int | None = None
    verify_target_rows: int | None = None
    verify_buckets_differing: int | None = None


def _newest_finish(runs: sa.Table, *where: sa.ColumnElement[bool]) -> sa.ScalarSelect[object]:
    # The newest run by id walks the (target_table, id) index backwards and stops at the
    # first match, where max(finished_at) would read every run kept in the history.
    return sa.select(runs.c.finished_at).where(*where).order_by(runs.c.id.desc()).limit(1).scalar_subquery()


def _statement(tables: Tables, source_index: str) -> sa.Select[tuple[object, ...]]:
    target = tables.target.name
    runs, dead, lease, verify = (tables.runs, tables.dead_letters, tables.lease, tables.verifications)
    # A retention drop is a run of its own, but says nothing of how fresh the copy is.
    mine = sa.and_(runs.c.target_table == target, runs.c.mode != "retention")
    latest_verify = (
        sa.select(verify)
        .where(verify.c.target_table == target, verify.c.source_index == source_index)
        .order_by(verify.c.id.desc())
        .limit(1)
        .subquery()
    )
    return sa.select(
        _newest_finish(runs, mine, runs.c.status.in_(_FINISHED_OK)).label("last_success_at"),
        _newest_finish(runs, mine, runs.c.finished_at.is_not(None)).label("last_run_at"),
        CursorStore(tables, source_index).query().scalar_subquery().label("cursor"),
        sa.select(sa.func.count())
        .select_from(dead)
        .where(dead.c.target_table == target, dead.c.resolved_at.is_(None))
        .scalar_subquery()
        .label("dead_letters_unresolved"),
        sa.exists().where(lease.c.name == target, lease.c.expires_at > sa.func.now()).label("lease_held"),
        sa.select(latest_verify.c.checked_at).scalar_subquery().label("verified_at"),
        sa.select(latest_verify.c.source_total).scalar_subquery().label("verify_source_documents"),
        sa.select(latest_verify.c.target_total).scalar_subquery().label("verify_target_rows"),
        sa.select(latest_verify.c.buckets_differing).scalar_subquery().label("verify_buckets_differing"),
    )


def read_stored_state(engine: sa.Engine, tables: Tables, source_index: str) -> StoredState:
    """Read the state in one query; before the tables exist everything is empty."""
    # Asked by the statement itself, not ahead (`present_tables`): a scrape costs one round trip.
    try:
        with engine.connect() as connection:
            row = connection.execute(_statement(tables, source_index)).mappings().one()
    except sa.exc.ProgrammingError as error:
        if is_missing_table(error):
            return StoredState()
        raise
    return StoredState(**dict(row))

"""The schema of the first release: the target table and the four state tables.

Created only where missing, so a database that the first release set up
(without a version table) is adopted as it is, rows kept.

Revision ID: 0001_release_one
Revises:
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_release_one"
down_revision = None
branch_labels = None
depends_on = None


def _ts(name: str, **kwargs: Any) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)


def _missing(name: str) -> bool:
    return not sa.inspect(op.get_bind()).has_table(name)


def upgrade(target_table: str) -> None:
    if _missing(target_table):
        op.create_table(
            target_table,
            sa.Column("es_index", sa.Text, primary_key=True),
            sa.Column("es_id", sa.Text, primary_key=True),
            _ts("event_timestamp"),
            sa.Column("source", JSONB, nullable=False),
            sa.Column("es_seq_no", sa.BigInteger),
            sa.Column("es_primary_term", sa.BigInteger),
            _ts("first_synced_at", nullable=False, server_default=sa.func.now()),
            _ts("last_synced_at", nullable=False, server_default=sa.func.now()),
        )
        op.create_index(f"{target_table[:50]}_event_ts_idx", target_table, ["event_timestamp"])
    if _missing("rtarf_sync_cursor"):
        op.create_table(
            "rtarf_sync_cursor",
            sa.Column("target_table", sa.Text, primary_key=True),
            sa.Column("source_index", sa.Text, primary_key=True),
            _ts("cursor_value"),
            _ts("updated_at", nullable=False, server_default=sa.func.now()),
        )
    if _missing("rtarf_sync_lease"):
        op.create_table(
            "rtarf_sync_lease",
            sa.Column("name", sa.Text, primary_key=True),
            sa.Column("owner", sa.Text, nullable=False),
            sa.Column("epoch", sa.BigInteger, nullable=False),
            _ts("acquired_at", nullable=False),
            _ts("expires_at", nullable=False),
        )
    if _missing("rtarf_sync_runs"):
        op.create_table(
            "rtarf_sync_runs",
            sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
            sa.Column("target_table", sa.Text, nullable=False),
            sa.Column("source_index", sa.Text, nullable=False),
            sa.Column("trigger", sa.Text, nullable=False),
            sa.Column("owner", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            _ts("started_at", nullable=False),
            _ts("finished_at"),
            *(
                sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
                for name in ("pages", "total_processed", "inserted", "updated", "unchanged", "failed", "known_bad")
            ),
            _ts("cursor_value"),
            sa.Column("error", sa.Text),
        )
        op.create_index("rtarf_sync_runs_target_idx", "rtarf_sync_runs", ["target_table", "started_at"])
    if _missing("rtarf_sync_dead_letters"):
        op.create_table(
            "rtarf_sync_dead_letters",
            sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
            sa.Column("target_table", sa.Text, nullable=False),
            sa.Column("es_index", sa.Text, nullable=False),
            sa.Column("es_id", sa.Text, nullable=False),
            sa.Column("es_seq_no", sa.BigInteger, nullable=False),
            sa.Column("es_primary_term", sa.BigInteger, nullable=False),
            sa.Column("reason", sa.Text, nullable=False),
            _ts("failed_at", nullable=False, server_default=sa.func.now()),
            sa.Column("raw_document", sa.Text, nullable=False),
            sa.Column("run_id", sa.BigInteger),
            sa.UniqueConstraint(
                "target_table",
                "es_index",
                "es_id",
                "es_seq_no",
                "es_primary_term",
                name="rtarf_sync_dead_letters_version_key",
            ),
        )


def downgrade(target_table: str) -> None:
    raise NotImplementedError("the first release's schema is the floor; restore a backup to go below it")

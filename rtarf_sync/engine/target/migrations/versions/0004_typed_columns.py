"""The typed columns applied to each target table.

- `rtarf_sync_columns`: one row per target table and typed column, holding the
  column's spec as it was last added and filled (columns/schema.py). At start-up
  the configured columns are compared with these rows: a new column, or one whose
  type or path changed, is (re)filled from the stored `source`, then recorded.
  Shared by every target (keyed by `target_table`), so it is made idempotently.

Revision ID: 0004_typed_columns
Revises: 0003_webhooks
"""

from __future__ import annotations

from alembic import op

revision = "0004_typed_columns"
down_revision = "0003_webhooks"
branch_labels = None
depends_on = None


def upgrade(target_table: str) -> None:
    op.execute(
        "CREATE TABLE IF NOT EXISTS rtarf_sync_columns ("
        "target_table text NOT NULL, name text NOT NULL, path text NOT NULL, type text NOT NULL, "
        "indexed boolean NOT NULL, on_error text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
        "PRIMARY KEY (target_table, name))"
    )


def downgrade(target_table: str) -> None:
    # Shared with other targets: dropping it here would make their columns look new.
    pass

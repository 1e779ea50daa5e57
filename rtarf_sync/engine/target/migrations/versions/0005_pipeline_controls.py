"""The operators' start/stop intent per pipeline, shared by every replica.

- `rtarf_sync_controls`: one row per target table, written by `POST .../stop`
  (paused) and `POST .../start` (not paused). Every process reads it before each
  scheduled run and every heartbeat, so a stop on one replica pauses the
  pipeline everywhere. Shared by every target (keyed by `target_table`), so it is
  made idempotently.

Revision ID: 0005_pipeline_controls
Revises: 0004_typed_columns
"""

from __future__ import annotations

from alembic import op

revision = "0005_pipeline_controls"
down_revision = "0004_typed_columns"
branch_labels = None
depends_on = None


def upgrade(target_table: str) -> None:
    op.execute(
        "CREATE TABLE IF NOT EXISTS rtarf_sync_controls ("
        "target_table text PRIMARY KEY, paused boolean NOT NULL, "
        "changed_at timestamptz NOT NULL DEFAULT now(), changed_by text NOT NULL)"
    )


def downgrade(target_table: str) -> None:
    # Shared with other targets: dropping it here would restart their stopped pipelines.
    pass

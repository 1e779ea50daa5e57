"""The operators' intent per pipeline (stopped or started), stored in `rtarf_sync_controls`.

A stop or start recorded here acts on every replica: each process reads its row
before a scheduled run and every heartbeat. No row means nobody ever stopped it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from rtarf_sync.engine.target.tables import is_missing_table


def read_paused(engine: sa.Engine, controls: sa.Table, target_table: str) -> bool | None:
    """Whether operators paused the pipeline of `target_table`; None without a row (or the table)."""
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.select(controls.c.paused).where(controls.c.target_table == target_table)
            ).scalar_one_or_none()
    except sa.exc.ProgrammingError as error:
        if is_missing_table(error):
            return None
        raise


def write_paused(
    engine: sa.Engine, controls: sa.Table, target_table: str, paused: bool, changed_by: str
) -> bool | None:
    """Record the intent for `target_table`; return the one it replaces (None if there was none)."""
    with engine.begin() as connection:
        previous = connection.execute(
            sa.select(controls.c.paused).where(controls.c.target_table == target_table).with_for_update()
        ).scalar_one_or_none()
        connection.execute(
            insert(controls)
            .values(target_table=target_table, paused=paused, changed_at=sa.func.now(), changed_by=changed_by)
            .on_conflict_do_update(
                index_elements=[controls.c.target_table],
                set_={"paused": paused, "changed_at": sa.func.now(), "changed_by": changed_by},
            )
        )
    return previous

"""Versioned schema migrations (Alembic), run at start-up and by `init-db`.

Each target table has its own Alembic version table, so several targets can
share one database; the state tables they share are changed idempotently
(`IF NOT EXISTS`), and every upgrade runs under one advisory lock, so two
processes that start at once never race: the second waits, then finds the
schema at head and does nothing.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

# Serialises schema changes across processes (the key table creation always used).
LOCK_KEY = 0x52544152
_HERE = Path(__file__).resolve().parent


def version_table(target: str) -> str:
    """The Alembic version table of one target table (a valid identifier of at most 63 bytes)."""
    name = f"rtarf_sync_schema_{target}"
    if len(name) <= 63:
        return name
    return f"rtarf_sync_schema_{target[:30]}_{hashlib.sha1(target.encode()).hexdigest()[:12]}"


def _config(connection: sa.Connection, target: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.attributes.update(connection=connection, target_table=target, version_table=version_table(target))
    return config


def upgrade(engine: sa.Engine, target: str) -> None:
    """Bring the target table and the state tables to the newest schema, under the advisory lock."""
    with engine.begin() as connection:
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_KEY)))
        command.upgrade(_config(connection, target), "heads")


def current(engine: sa.Engine, target: str) -> set[str]:
    """The revisions the database is at for `target` (empty before the first upgrade)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": version_table(target)})
        return set(context.get_current_heads())


def heads() -> set[str]:
    """The newest revisions this release knows."""
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    return set(ScriptDirectory.from_config(config).get_heads())

"""Alembic environment: always given an open connection by `migrations.upgrade`."""

from __future__ import annotations

from alembic import context

config = context.config
context.configure(
    connection=config.attributes["connection"], version_table=config.attributes["version_table"], transactional_ddl=True
)
with context.begin_transaction():
    context.run_migrations(target_table=config.attributes["target_table"])

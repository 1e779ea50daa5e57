"""The naive sync, the way a first implementation is usually written.

`opensearchpy.helpers.scan` (a scroll, 1,000 hits per request) and, for every
document, one `INSERT ... ON CONFLICT DO UPDATE` through SQLAlchemy Core,
committing every 1,000 documents (one transaction per scroll page; a commit
per document would be slower still). No version guard, no cursor, no lease:
it only has to be correct on a first load, which is all it is measured on.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import opensearchpy
import sqlalchemy as sa
from opensearchpy import helpers
from sqlalchemy.dialects.postgresql import insert

from config import Settings
from rtarf_sync.engine.target.tables import build_tables

COMMIT_EVERY = 1000


def _statement(table: sa.Table) -> sa.sql.Executable:
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.es_index, table.c.es_id],
        set_={
            "event_timestamp": statement.excluded.event_timestamp,
            "source": statement.excluded.source,
            "last_synced_at": sa.func.now(),
        },
    )


def naive_sync(settings: Settings, table: str, before: str) -> dict[str, Any]:
    """Copy the events with `@timestamp` < `before` into a fresh `table`, one INSERT each."""
    engine = sa.create_engine(settings.database_url.reveal())
    target = build_tables(table).target
    with engine.begin() as connection:
        target.drop(connection, checkfirst=True)
        target.create(connection)
    client = opensearchpy.OpenSearch(list(settings.es_urls), timeout=settings.es_request_timeout_seconds)
    query = {"query": {"range": {settings.cursor_field: {"lt": before}}}}
    upsert = _statement(target)
    events = 0
    started = time.perf_counter()
    with engine.connect() as connection:
        for hit in helpers.scan(client, query=query, index=settings.es_index, size=COMMIT_EVERY, scroll="5m"):
            source = hit["_source"]
            stamp = datetime.fromisoformat(source["@timestamp"].replace("Z", "+00:00"))
            connection.execute(
                upsert, {"es_index": hit["_index"], "es_id": hit["_id"], "event_timestamp": stamp, "source": source}
            )
            events += 1
            if events % COMMIT_EVERY == 0:
                connection.commit()
        connection.commit()
    seconds = time.perf_counter() - started
    client.close()
    engine.dispose()
    return {"events": events, "seconds": seconds, "commit_every": COMMIT_EVERY}

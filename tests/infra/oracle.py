"""Independent views of both sides, for exact comparisons in sync tests.

The engine side is read with plain REST calls and the database side with
plain SQL, never through the code under test.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from tests.infra.harness.http import EngineHttp

Doc = tuple[int, int, dict[str, Any]]


def engine_docs(engine: EngineHttp, index: str) -> dict[tuple[str, str], Doc]:
    """Every searchable document: (index, id) -> (primary_term, seq_no, source)."""
    answer = engine.call(
        "POST",
        f"/{index}/_search?scroll=1m",
        {"size": 1000, "seq_no_primary_term": True, "query": {"match_all": {}}, "sort": ["_doc"]},
    )
    docs: dict[tuple[str, str], Doc] = {}
    while answer["hits"]["hits"]:
        for hit in answer["hits"]["hits"]:
            docs[(hit["_index"], hit["_id"])] = (hit["_primary_term"], hit["_seq_no"], hit["_source"])
        answer = engine.call("POST", "/_search/scroll", {"scroll": "1m", "scroll_id": answer["_scroll_id"]})
    engine.call("DELETE", "/_search/scroll", {"scroll_id": [answer["_scroll_id"]]}, ok_missing=True)
    return docs


def table_docs(db: sa.Engine, table: str, live: bool = False) -> dict[tuple[str, str], Doc]:
    """Every row of a target table (only those without deleted_at when `live`), shaped like engine_docs."""
    where = " WHERE deleted_at IS NULL" if live else ""
    with db.connect() as connection:
        rows = connection.execute(
            sa.text(f'SELECT es_index, es_id, es_primary_term, es_seq_no, source FROM "{table}"{where}')
        ).all()
    return {(r.es_index, r.es_id): (r.es_primary_term, r.es_seq_no, r.source) for r in rows}


def deleted_keys(db: sa.Engine, table: str) -> set[tuple[str, str]]:
    """Keys of the rows marked deleted (deleted_at set)."""
    with db.connect() as connection:
        rows = connection.execute(sa.text(f'SELECT es_index, es_id FROM "{table}" WHERE deleted_at IS NOT NULL')).all()
    return {(r.es_index, r.es_id) for r in rows}


def stored_cursor(db: sa.Engine, table: str) -> Any:
    """The stored cursor of a target table (any source index setting), or None."""
    with db.connect() as connection:
        return connection.execute(
            sa.text("SELECT max(cursor_value) FROM rtarf_sync_cursor WHERE target_table = :t"), {"t": table}
        ).scalar()


def scalar(db: sa.Engine, sql: str, **params: Any) -> Any:
    """One value from a SQL query."""
    with db.connect() as connection:
        return connection.execute(sa.text(sql), params).scalar()


def rows(db: sa.Engine, sql: str, **params: Any) -> list[Any]:
    """All rows of a SQL query."""
    with db.connect() as connection:
        return list(connection.execute(sa.text(sql), params).all())


def index_docs(engine: EngineHttp, index: str, docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Index documents by id with one bulk request; return the bulk answer."""
    lines: list[str] = []
    for doc_id, source in docs.items():
        lines.append(json.dumps({"index": {"_index": index, "_id": doc_id}}))
        lines.append(json.dumps(source))
    return engine.bulk("\n".join(lines) + "\n")

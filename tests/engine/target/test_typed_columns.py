"""Typed columns: values convert exactly, land with the page, and a value that does not convert sets its
document aside naming the column and path (or is NULL with on_error = "null")."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from config import COLUMN_TYPES, ColumnSpec, ConfigError, Settings
from rtarf_sync.engine.runs.sync import SyncService
from rtarf_sync.engine.target.columns.column_set import ColumnSet, check_columns
from rtarf_sync.engine.target.columns.pg_types import TYPES
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs, rows, scalar

COLUMNS = (
    ColumnSpec("source_ip", "source.ip", "inet"),
    ColumnSpec("severity", "event.severity", "smallint", index=True),
    ColumnSpec("rule_name", "rule.name", "text", index=True),
    ColumnSpec("tags", "tags", "text[]"),
    ColumnSpec("seen_at", "event.created", "timestamptz"),
    ColumnSpec("blocked", "event.blocked", "boolean"),
    ColumnSpec("bytes", "network.bytes", "bigint"),
    ColumnSpec("score", "risk.score", "double precision"),
    ColumnSpec("details", "details", "jsonb"),
    ColumnSpec("port", "destination.port", "integer", on_error="null"),
)
KEYWORDS = ("source.ip", "event.severity", "rule.name", "tags", "event.created", "event.blocked", "network.bytes")


def create_index(engine: EngineHttp, index: str, keywords: tuple[str, ...] = KEYWORDS) -> None:
    """An index whose column fields are keywords, so documents of any value shape are accepted."""
    properties: dict[str, Any] = {"@timestamp": {"type": "date"}, "kind": {"type": "keyword"}}
    for path in (*keywords, "risk.score", "destination.port"):
        node = properties
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[parts[-1]] = {"type": "keyword"}
    engine.call(
        "PUT",
        f"/{index}",
        {"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": {"properties": properties}},
    )


def event(n: int, **fields: Any) -> dict[str, Any]:
    """A document with every column's path filled with a good value, then `fields` over it."""
    doc: dict[str, Any] = {
        "@timestamp": f"2026-03-01T10:00:{n:02d}Z",
        "kind": "alert",
        "source": {"ip": f"10.1.2.{n}"},
        "event": {"severity": n % 5, "created": "2026-03-01T09:59:00+07:00", "blocked": n % 2 == 0},
        "rule": {"name": f"rule-{n}"},
        "tags": ["a", "b"],
        "network": {"bytes": 2**40 + n},
        "risk": {"score": 0.5 + n},
        "details": {"k": [1, 2], "m": {"x": None}},
        "destination": {"port": 443},
    }
    doc.update(fields)
    return doc


def typed_settings(settings: Settings, columns: tuple[ColumnSpec, ...] = COLUMNS) -> Settings:
    return dataclasses.replace(settings, columns=columns)


def test_every_type_the_settings_accept_converts_and_is_covered_here() -> None:
    # The settings' list (which the configuration checks) and the conversions are kept apart: the
    # configuration imports nothing of the engine.
    assert set(TYPES) == set(COLUMN_TYPES)
    assert {spec.type for spec in COLUMNS} == set(COLUMN_TYPES)


def test_typed_columns_land_with_the_page_and_bad_values_are_set_aside_naming_column_and_path(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    create_index(engine, index_name)
    docs = {f"good-{n}": event(n) for n in range(6)}
    docs["flat-keys"] = {**event(7), "source.ip": "2001:db8::1", "tags": "single"}
    docs["missing"] = {"@timestamp": "2026-03-01T10:01:00Z"}
    docs["bad-severity"] = event(8, event={"severity": 40000})
    docs["bad-ip"] = event(9, source={"ip": "10.0.0.999"})
    docs["bad-bool"] = event(10, event={"blocked": "yes"})
    docs["bad-port-nulled"] = event(11, destination={"port": "https"})
    assert index_docs(engine, index_name, docs)["errors"] is False
    engine.refresh(index_name)
    service = SyncService(typed_settings(make_settings(engine, index_name)))
    result = service.run()
    assert (result.status, result.inserted, result.failed) == ("partial", 9, 3)
    got = {
        row.es_id: row
        for row in rows(
            db_engine,
            "SELECT es_id, source_ip, severity, rule_name, tags, seen_at, blocked, bytes, score, details, port "
            f'FROM "{table_name}"',
        )
    }
    assert got["good-3"].source_ip == ipaddress.ip_address("10.1.2.3") or str(got["good-3"].source_ip) == "10.1.2.3"
    assert (got["good-3"].severity, got["good-3"].rule_name, got["good-3"].tags) == (3, "rule-3", ["a", "b"])
    assert got["good-3"].seen_at == datetime(2026, 3, 1, 2, 59, tzinfo=timezone.utc)
    assert (got["good-3"].blocked, got["good-4"].blocked) == (False, True)
    assert (got["good-3"].bytes, got["good-3"].score, got["good-3"].port) == (2**40 + 3, 3.5, 443)
    assert got["good-3"].details == {"k": [1, 2], "m": {"x": None}}
    assert str(got["flat-keys"].source_ip) == "2001:db8::1" and got["flat-keys"].tags == ["single"]
    assert all(value is None for value in got["missing"][1:])
    assert got["bad-port-nulled"].port is None and got["bad-port-nulled"].severity == 11 % 5
    in_net = scalar(db_engine, f"SELECT count(*) FROM \"{table_name}\" WHERE source_ip << '10.1.2.0/24'")
    assert in_net == 7  # good-0..5 and bad-port-nulled
    dead = {
        row.es_id: row.reason
        for row in rows(
            db_engine, "SELECT es_id, reason FROM rtarf_sync_dead_letters WHERE target_table = :t", t=table_name
        )
    }
    assert set(dead) == {"bad-severity", "bad-ip", "bad-bool"}
    assert "column severity (path event.severity, smallint)" in dead["bad-severity"]
    assert "column source_ip (path source.ip, inet)" in dead["bad-ip"]
    assert "column blocked (path event.blocked, boolean)" in dead["bad-bool"]
    service.close()


def test_a_newer_version_rewrites_the_typed_columns_through_the_upsert(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    create_index(engine, index_name)
    index_docs(engine, index_name, {f"d{n}": event(n) for n in range(3)})
    engine.refresh(index_name)
    # One document a page: d0's page is unchanged, so d1's is handed over unconverted (Deferred) and
    # converted on the writer's thread, whose rows the sink encodes itself.
    settings = typed_settings(
        make_settings(engine, index_name, RTARF_SYNC_OVERLAP_SECONDS=86400 * 3650, RTARF_SYNC_BATCH_SIZE=1)
    )
    service = SyncService(settings)
    assert service.run().inserted == 3
    index_docs(engine, index_name, {"d1": event(1, rule={"name": "renamed"}, source={"ip": "192.168.0.1"})})
    engine.refresh(index_name)
    assert service.run().updated == 1
    row = rows(db_engine, f"SELECT rule_name, source_ip FROM \"{table_name}\" WHERE es_id = 'd1'")[0]
    assert (row.rule_name, str(row.source_ip)) == ("renamed", "192.168.0.1")
    service.close()


def test_an_indexed_column_gets_its_index(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    create_index(engine, index_name)
    service = SyncService(typed_settings(make_settings(engine, index_name)))
    service.ensure_tables()
    indexes = {
        row.indexname for row in rows(db_engine, "SELECT indexname FROM pg_indexes WHERE tablename = :t", t=table_name)
    }
    assert {f"{table_name}_severity_idx", f"{table_name}_rule_name_idx"} <= indexes
    assert f"{table_name}_source_ip_idx" not in indexes
    service.close()


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("smallint", 32767, 32767),
        ("smallint", "-12", -12),
        ("integer", 2**31 - 1, 2**31 - 1),
        ("bigint", -(2**63), -(2**63)),
        ("double precision", "1.5e3", 1500.0),
        ("double precision", 7, 7.0),
        ("boolean", False, False),
        ("text", 12, "12"),
        ("text", True, "true"),
        ("text[]", "one", ["one"]),
        ("text[]", [], []),
        ("timestamptz", 1767225600000, datetime(2026, 1, 1, tzinfo=timezone.utc)),
        ("timestamptz", "2026-01-01T07:00:00+07:00", datetime(2026, 1, 1, tzinfo=timezone.utc)),
        ("jsonb", [1, "a"], b'[1,"a"]'),
    ],
)
def test_values_that_convert(kind: str, value: Any, expected: Any) -> None:
    columns = ColumnSet([ColumnSpec("c", "a.b", kind)])
    assert columns.values({"a": {"b": value}}) == (expected,)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("smallint", 32768),
        ("smallint", 1.0),
        ("smallint", True),
        ("smallint", " 5"),
        ("integer", 2**31),
        ("bigint", 2**63),
        ("double precision", "1e999"),
        ("double precision", "NaN"),
        ("boolean", "true"),
        ("boolean", 1),
        ("inet", "10.0.0.256"),
        ("inet", 167772161),
        ("inet", "fe80::1%eth0"),
        ("text", {"x": 1}),
        ("text[]", ["a", None]),
        ("text[]", [["nested"]]),
        ("timestamptz", "tomorrow"),
    ],
)
def test_values_that_do_not_convert_name_column_and_path(kind: str, value: Any) -> None:
    columns = ColumnSet([ColumnSpec("c", "a.b", kind)])
    reason = columns.values({"a": {"b": value}})
    assert isinstance(reason, str) and reason.startswith(f"column c (path a.b, {kind})")
    nulled = ColumnSet([ColumnSpec("c", "a.b", kind, on_error="null")])
    assert nulled.values({"a": {"b": value}}) == (None,)


def test_column_settings_the_table_cannot_hold_are_refused() -> None:
    for bad in (
        ColumnSpec("source", "x", "text"),
        ColumnSpec("Bad-Name", "x", "text"),
        ColumnSpec("c", "x", "varchar"),
        ColumnSpec("c", "x..y", "text"),
        ColumnSpec("c", "x", "text", on_error="skip"),
    ):
        with pytest.raises(ConfigError):
            check_columns([bad])
    with pytest.raises(ConfigError):
        check_columns([ColumnSpec("c", "x", "text"), ColumnSpec("c", "y", "text")])


def test_a_page_written_row_by_row_fills_the_typed_columns_too(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    create_index(engine, index_name)
    index_docs(engine, index_name, {f"d{n}": event(n) for n in range(3)})
    engine.refresh(index_name)
    settings = typed_settings(make_settings(engine, index_name, RTARF_SYNC_OVERLAP_SECONDS=86400 * 3650))
    service = SyncService(settings)
    assert service.run().inserted == 3
    with db_engine.begin() as connection:
        connection.exec_driver_sql(
            f"ALTER TABLE \"{table_name}\" ADD CONSTRAINT no_refused CHECK (source->>'kind' IS DISTINCT FROM 'refused')"
        )
    index_docs(
        engine,
        index_name,
        {
            "d0": event(0, kind="refused"),
            "d1": event(1, tags="changed", source={"ip": "::1"}, event={"severity": 4, "created": 0}),
        },
    )
    engine.refresh(index_name)
    result = service.run()
    assert (result.updated, result.failed) == (1, 1)
    row = rows(
        db_engine, f"SELECT tags, source_ip, severity, seen_at, details FROM \"{table_name}\" WHERE es_id = 'd1'"
    )[0]
    assert (row.tags, str(row.source_ip), row.severity) == (["changed"], "::1", 4)
    assert row.seen_at == datetime(1970, 1, 1, tzinfo=timezone.utc) and row.details == {"k": [1, 2], "m": {"x": None}}
    service.close()


def test_a_replayed_dead_letter_fills_the_typed_columns(
    engine: EngineHttp, index_name: str, table_name: str, make_settings: Callable[..., Settings], db_engine: sa.Engine
) -> None:
    from rtarf_sync.engine.checks.replay import DeadLetterReplay

    create_index(engine, index_name)
    index_docs(engine, index_name, {"good": event(1), "bad": event(2, event={"severity": "high"})})
    engine.refresh(index_name)
    service = SyncService(typed_settings(make_settings(engine, index_name)))
    assert service.run().failed == 1
    index_docs(engine, index_name, {"bad": event(2, event={"severity": 2})})
    engine.refresh(index_name)
    outcome = DeadLetterReplay(service).run()
    assert outcome.replayed == 1
    row = rows(db_engine, f"SELECT severity, rule_name, source_ip FROM \"{table_name}\" WHERE es_id = 'bad'")[0]
    assert (row.severity, row.rule_name, str(row.source_ip)) == (2, "rule-2", "10.1.2.2")
    service.close()


SHAPES = [
    {"source": {"ip": "10.0.0.1", "port": 1}, "event": {"severity": 3}, "tags": ["x"]},
    {"source.ip": "10.0.0.2", "source": {"ip": "10.0.0.3"}, "event": {"severity": "4"}},
    {"source": "not an object", "event": None, "tags": "one"},
    {"source": {"ip": None}, "event": {"severity": [1]}, "tags": [1, True, 2.5]},
    {"unrelated": {"deep": [1, 2, {"x": "y"}]}},
    {"event": {"severity": 99999}},
]


@pytest.mark.parametrize("document", SHAPES)
@pytest.mark.parametrize("with_prefix", [False, True])
def test_reading_the_raw_json_gives_what_the_decoded_document_gives(
    document: dict[str, Any], with_prefix: bool
) -> None:
    """The one-pass msgspec lookup of the fast path and the lookup in a decoded document agree."""
    specs = [
        ColumnSpec("ip", "source.ip", "inet", on_error="null"),
        ColumnSpec("severity", "event.severity", "smallint"),
        ColumnSpec("tags", "tags", "text[]"),
    ]
    if with_prefix:
        specs.append(ColumnSpec("event", "event", "jsonb"))  # a prefix of another path: decoded whole
    columns = ColumnSet(specs)
    assert columns.raw_values(json.dumps(document).encode()) == columns.values(document)


MORE_SHAPES = [
    *SHAPES,
    {"@timestamp": "2025-01-02T03:04:05.678Z", "source": {"ip": "10.0.0.9/8"}, "tags": ["a", "b"], "seen": 5},
    {"@timestamp": 1735787045678, "source": {"ip": "fe80::1"}, "tags": [], "seen": "2025-01-02T03:04:05+07:00"},
    {"@timestamp": None, "event": {"severity": 7}, "seen": "2025-01-02 03:04:05"},
    {"@timestamp": "2025-01-02", "event.severity": 8, "event": {"severity": 9}, "source": {"ip": "300.1.1.1"}},
    {"@timestamp": "2025-01-02T03:04:05Z", "seen": "not a date T", "tags": ["é", "x" * 300]},
]


@pytest.mark.parametrize("document", MORE_SHAPES)
@pytest.mark.parametrize("cursor", ["@timestamp", "seen"])
def test_one_pass_fields_equal_the_cursor_and_values_read_apart(document: dict[str, Any], cursor: str) -> None:
    """The COPY fields read with the cursor in one pass equal the values read apart and then encoded."""
    from rtarf_sync.engine.target.documents import CursorField

    specs = [
        ColumnSpec("ip", "source.ip", "inet", on_error="null"),
        ColumnSpec("severity", "event.severity", "smallint"),
        ColumnSpec("tags", "tags", "text[]"),
        ColumnSpec("seen", "seen", "timestamptz", on_error="null"),
    ]
    columns = ColumnSet(specs)
    data = json.dumps(document).encode()
    read = columns.raw_fields(data, cursor)
    apart = CursorField(cursor).value(data)
    values = columns.values(document)
    # The one pass declines a flat dotted key and a non-object where a path leads on (the general path reads those).
    fits = not any("." in key for key in document) and all(
        part not in document or isinstance(document[part], dict) for part in ("source", "event")
    )
    assert (read is not None) == fits
    if read is None:
        return
    assert read[0] == (None if apart is None or apart.__class__ is object else apart)
    assert read[1] == (values if isinstance(values, str) else columns.encode(values))

"""The pipelines file (RTARF_PIPELINES_FILE): named index-to-table pipelines, each a Settings of its own.

`load_pipelines(environ, settings)` returns name -> Settings. Without the file there is one pipeline,
`default`, from the environment. Each key goes through the rule its variable has in config/, so a
file and the environment are checked alike; a bad file raises ConfigError naming the pipeline and key.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime
from dataclasses import replace
from typing import Any, Mapping

from rtarf_sync.engine.target.columns.column_set import check_columns
from rtarf_sync.engine.target.partitions import check_partitioning
from config import (
    PARTITION_KINDS,
    COLUMN_ON_ERROR,
    DEFAULT_PIPELINE,
    PIPELINE_KEYS,
    PIPELINES_FILE_VARIABLE,
    SETTING_RULES,
    ColumnSpec,
    ConfigError,
    Invalid,
    Settings,
    load_settings,
)

VARIABLE = PIPELINES_FILE_VARIABLE
_NAME = re.compile(r"[a-z0-9_-]+")
_COLUMN_KEYS = ("path", "type", "index", "on_error")
_FIELD = re.compile(r"[A-Za-z0-9_@*][A-Za-z0-9_@.*\-]*")


def load_pipelines(environ: Mapping[str, str], settings: Settings | None = None) -> dict[str, Settings]:
    """Name -> Settings of every pipeline, in file order; one `default` pipeline without the file."""
    base = settings if settings is not None else load_settings(environ)
    path = (environ.get(VARIABLE) or "").strip()
    if not path:
        return {base.pipeline: base}
    return parse_pipelines(_read(path), base, f"{VARIABLE}={path!r}")


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"{VARIABLE}={path!r} is invalid: cannot read the file ({error.strerror})") from None
    except tomllib.TOMLDecodeError as error:  # its message gives the line and column
        raise ConfigError(f"{VARIABLE}={path!r} is invalid: not TOML: {error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{VARIABLE}={path!r} is invalid: not UTF-8 text") from None


def parse_pipelines(document: Mapping[str, Any], base: Settings, origin: str = VARIABLE) -> dict[str, Settings]:
    """Name -> Settings from a parsed pipelines file, each built on `base` (the environment's settings)."""
    for key in document:
        if key not in ("defaults", "pipelines"):
            raise ConfigError(f"{origin}: unknown top-level key {key!r} (expected [defaults] and [pipelines.NAME])")
    defaults = _table(document.get("defaults", {}), origin, "[defaults]")
    shared = _apply(base, defaults, origin, "[defaults]")
    pipelines = _table(document.get("pipelines"), origin, "[pipelines]")
    if not pipelines:
        raise ConfigError(f"{origin}: no pipelines: add at least one [pipelines.NAME] table")
    result: dict[str, Settings] = {}
    tables: dict[str, str] = {}
    for name, keys in pipelines.items():
        where = f"pipeline {name!r}"
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{origin}: {where} is invalid: a pipeline name is lowercase letters, digits, _ and -")
        settings = replace(_apply(shared, _table(keys, origin, where), origin, where), pipeline=name)
        try:
            check_partitioning(settings)  # retention needs partitions, holds are ranges: the target's own rules
        except ConfigError as error:
            raise ConfigError(f"{origin}: {where}, key {error}") from None
        if settings.table in tables:
            raise ConfigError(
                f"{origin}: {where}, key 'table': {settings.table!r} is already the table of pipeline "
                f"{tables[settings.table]!r} (each pipeline writes a table of its own)"
            )
        tables[settings.table] = name
        result[name] = settings
    return result


def _table(value: Any, origin: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: {where} is invalid: expected a table")
    return value


def _apply(settings: Settings, keys: Mapping[str, Any], origin: str, where: str) -> Settings:
    """`settings` with every key of one file section applied, each checked by its rule."""
    for key, value in keys.items():
        try:
            settings = _apply_key(settings, key, value)
        except Invalid as invalid:
            raise ConfigError(
                f"{origin}: {where}, key {key!r}: {value!r} is invalid: expected {invalid.expected}"
            ) from None
        except ConfigError as error:
            raise ConfigError(f"{origin}: {where}, key {key!r}: {error}") from None
    return settings


def _apply_key(settings: Settings, key: str, value: Any) -> Settings:
    if key in PIPELINE_KEYS:
        variable, place = PIPELINE_KEYS[key]
        checked = SETTING_RULES[variable].from_value(value)
        if len(place) == 1:
            return replace(settings, **{place[0]: checked})
        group, name = place
        return replace(settings, **{group: replace(getattr(settings, group), **{name: checked})})
    if key == "query":
        if not isinstance(value, dict) or not value:
            raise Invalid('a query DSL object such as { term = { "event.kind" = "alert" } }')
        return replace(settings, query=value)
    if key in ("source_includes", "source_excludes"):
        if not isinstance(value, list) or any(
            not isinstance(item, str) or not _FIELD.fullmatch(item) for item in value
        ):
            raise Invalid('a list of field names or patterns such as ["@timestamp", "event.*"]')
        patterns: dict[str, Any] = {key: tuple(value)}
        return replace(settings, **patterns)
    if key == "columns":
        return replace(settings, columns=_columns(value))
    if key == "partition":
        if value not in PARTITION_KINDS:
            raise Invalid(" or ".join(f'"{kind}"' for kind in PARTITION_KINDS))
        return replace(settings, partition=value)
    if key == "retention_days":
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid("a whole number of days")
        return replace(settings, retention_days=value)
    if key == "legal_hold":
        return replace(settings, legal_hold=_holds(value))
    raise ConfigError("unknown key (see docs/pipelines.md for the keys a pipeline takes)")


def _holds(value: Any) -> tuple[tuple[date, date], ...]:
    """`[["2026-01-01", "2026-02-01"], ...]`: [from, to) ranges, as TOML dates or ISO date strings."""
    expected = 'a list of [from, to) date pairs such as [["2026-01-01", "2026-02-01"]]'
    if not isinstance(value, list):
        raise Invalid(expected)
    holds = []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            raise Invalid(expected)
        try:
            ends = [item if isinstance(item, date) else date.fromisoformat(item) for item in pair]
        except (TypeError, ValueError):
            raise Invalid(expected) from None
        if any(isinstance(end, datetime) for end in ends):
            raise Invalid(expected + " (dates, not times)")
        holds.append((ends[0], ends[1]))
    return tuple(holds)


def _columns(value: Any) -> tuple[ColumnSpec, ...]:
    if not isinstance(value, dict):
        raise Invalid('a table of columns such as { source_ip = { path = "source.ip", type = "inet" } }')
    columns = tuple(_column(name, spec) for name, spec in value.items())
    check_columns(columns)  # names, types, paths and on_error: the table's own rules, in one place
    return columns


def _column(name: str, spec: Any) -> ColumnSpec:
    """The shape of one typed column's table; what its values may be is `check_columns`' to say."""
    if not isinstance(spec, dict):
        raise ConfigError(f'column {name!r} is invalid: expected a table such as {{ path = "a.b", type = "text" }}')
    for key in spec:
        if key not in _COLUMN_KEYS:
            raise ConfigError(f"column {name!r}: unknown key {key!r} (expected {', '.join(_COLUMN_KEYS)})")
    path, kind = spec.get("path"), spec.get("type")
    index, on_error = spec.get("index", False), spec.get("on_error", COLUMN_ON_ERROR[0])
    for key, given, wanted in (
        ("path", path, str),
        ("type", kind, str),
        ("index", index, bool),
        ("on_error", on_error, str),
    ):
        if not isinstance(given, wanted):
            expected = "true or false" if wanted is bool else "a string"
            raise ConfigError(f"column {name!r}, {key} {given!r} is invalid: expected {expected}")
    return ColumnSpec(name=name, path=str(path), type=str(kind), index=bool(index), on_error=str(on_error))


def pick_pipeline(pipelines: Mapping[str, Settings], name: str | None) -> Settings:
    """The settings of pipeline `name`, or of the primary one when None; ConfigError when there is none."""
    names = ", ".join(pipelines)
    if name is None:
        primary = primary_pipeline(pipelines)
        if primary is None:
            raise ConfigError(f"several pipelines ({names}) and none named default: choose one with --pipeline NAME")
        return pipelines[primary]
    if name not in pipelines:
        raise ConfigError(f"--pipeline {name!r}: no such pipeline (pipelines: {names})")
    return pipelines[name]


def primary_pipeline(pipelines: Mapping[str, Settings]) -> str | None:
    """The pipeline the /scheduler routes act on: `default`, or the only one; None when neither."""
    if DEFAULT_PIPELINE in pipelines:
        return DEFAULT_PIPELINE
    return next(iter(pipelines)) if len(pipelines) == 1 else None

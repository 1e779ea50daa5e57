"""A pipeline's engine filter and `_source` selection, carried by every read of the engine.

    filtered(settings.query, clause)   # the run's window (or an ids lookup) AND the pipeline's query
    source_selection(settings)         # `_source` includes/excludes, or None for the whole document

The query narrows what the pipeline answers for: runs, verification counts, replay's
lookups and repairs read only matching documents. Reconciliation confirms a deletion
with an unfiltered ids lookup, so a document that stops matching the query is out of
scope, never "deleted": its row stays as last written. Includes always keep the cursor
field (the run cannot order or window without it); excludes that would drop it are
refused (`check_source_filter`).
"""

from __future__ import annotations

import fnmatch
from typing import Any

from config import ConfigError, Settings

Json = dict[str, Any]


def filtered(query: Json | None, clause: Json) -> Json:
    """`clause` and the pipeline's query both required (the query scores nothing: a filter)."""
    if not query:
        return clause
    return {"bool": {"filter": [clause, query]}}


def source_selection(settings: Settings) -> Json | None:
    """The `_source` part of a search body, or None to fetch whole documents."""
    if not settings.source_includes and not settings.source_excludes:
        return None
    selection: Json = {}
    if settings.source_includes:
        includes = list(settings.source_includes)
        if settings.cursor_field not in includes:
            includes.append(settings.cursor_field)  # the cursor orders and windows every run
        selection["includes"] = includes
    if settings.source_excludes:
        selection["excludes"] = list(settings.source_excludes)
    return selection


def check_source_filter(settings: Settings) -> None:
    """Refuse `source_excludes` that would drop the cursor field (or an object holding it)."""
    parts = settings.cursor_field.split(".")
    prefixes = [".".join(parts[: end + 1]) for end in range(len(parts))]
    for pattern in settings.source_excludes:
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            raise ConfigError(
                f"source_excludes: {pattern!r} drops the cursor field {settings.cursor_field}, "
                "which every run needs to order and window documents"
            )
    if settings.query is not None and not isinstance(settings.query, dict):
        raise ConfigError("query: must be a query DSL object")

"""Indices, aliases, documents and refresh.

Each index keeps two dicts of immutable `Doc`s: `live` (what GET by id sees,
realtime) and `searchable` (what search, count and PIT see). A refresh
replaces `searchable` with a fresh copy of `live` instead of mutating it, so
a point in time can keep a reference to the old dict as its snapshot.
"""

from __future__ import annotations

import base64
import fnmatch
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any

from tests.infra.esserver import dates
from tests.infra.esserver.errors import EsError, index_not_found
from tests.infra.esserver.mapping import Mapping

_FORBIDDEN_NAME_CHARS = set('\\/*?"<>| ,#:')


@dataclass(frozen=True, slots=True)
class Doc:
    """One version of one document."""

    id: str
    source: dict[str, Any]
    version: int
    seq_no: int
    primary_term: int
    order: int  # global write order, standing in for the Lucene doc id
    # Indexed values per field, filled on first use: the source never changes,
    # and every page of a search would otherwise parse the same dates again.
    memo: dict[Any, list[Any]] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class IndexView:
    """The searchable documents of one index at one moment."""

    name: str
    docs: dict[str, Doc]
    mapping: Mapping


def random_id(size: int = 15) -> str:
    """Return a URL-safe random id like the ones Elasticsearch generates."""
    return base64.urlsafe_b64encode(secrets.token_bytes(size)).decode().rstrip("=")


class Index:
    """One index: one primary shard, primary term 1."""

    primary_term = 1

    def __init__(self, name: str, mapping: Mapping, settings: dict[str, Any] | None = None) -> None:
        self.name = name
        self.uuid = random_id(16)
        self.mapping = mapping
        self.settings = index_settings(settings)
        self.created_ms = time.time_ns() // 1_000_000
        self.live: dict[str, Doc] = {}
        self.searchable: dict[str, Doc] = {}
        self.versions: dict[str, int] = {}  # last version per id, deleted ones included
        self.max_seq_no = -1
        self.dirty = False
        self.refreshed_at = time.monotonic()

    def next_seq_no(self) -> int:
        """Take the next sequence number of this shard."""
        self.max_seq_no += 1
        return self.max_seq_no

    def put(self, doc_id: str, source: dict[str, Any], order: int) -> Doc:
        """Store a new version of a document (not yet searchable)."""
        version = self.versions.get(doc_id, 0) + 1
        doc = Doc(doc_id, source, version, self.next_seq_no(), self.primary_term, order)
        self.live[doc_id] = doc
        self.versions[doc_id] = version
        self.dirty = True
        return doc

    def remove(self, doc_id: str) -> tuple[bool, int, int]:
        """Delete a document; return (found, version, seq_no)."""
        found = self.live.pop(doc_id, None) is not None
        version = self.versions.get(doc_id, 0) + 1
        self.versions[doc_id] = version
        self.dirty = True
        return found, version, self.next_seq_no()

    def refresh_interval(self, default: float | None) -> float | None:
        """Seconds between automatic refreshes: the index setting, else the server's."""
        setting = self.settings.get("refresh_interval")
        if setting is None:
            return default
        return None if setting == "-1" else dates.parse_time_value(setting)

    def refresh(self) -> None:
        """Make every write so far visible to search."""
        if self.dirty:
            self.searchable = dict(self.live)
            self.dirty = False
        self.refreshed_at = time.monotonic()

    def view(self, snapshot: bool = False) -> IndexView:
        """Return the searchable state; `snapshot` also freezes the mapping."""
        return IndexView(self.name, self.searchable, self.mapping.copy() if snapshot else self.mapping)

    def info(self) -> dict[str, Any]:
        """Return the body of GET /<index> for this index."""
        settings = {
            "index": {
                "number_of_shards": "1",
                "number_of_replicas": "1",
                **self.settings,
                "uuid": self.uuid,
                "creation_date": str(self.created_ms),
                "provided_name": self.name,
            }
        }
        return {"aliases": {}, "mappings": self.mapping.body(), "settings": settings}


def index_settings(settings: dict[str, Any] | None) -> dict[str, str]:
    """Flatten `{"index": {...}}` and `{"number_of_shards": 1}` alike into string values."""
    flat: dict[str, str] = {}
    for key, value in (settings or {}).items():
        if key == "index" and isinstance(value, dict):
            flat.update(index_settings(value))
        else:
            flat[key.removeprefix("index.")] = str(value).lower() if isinstance(value, bool) else str(value)
    return flat


def validate_index_name(name: str) -> None:
    """Reject names Elasticsearch rejects."""
    problem = None
    if name != name.lower():
        problem = "must be lowercase"
    elif name[:1] in ("_", "-", "+") or name in ("", ".", ".."):
        problem = "must not start with '_', '-', or '+'"
    elif set(name) & _FORBIDDEN_NAME_CHARS:
        problem = 'must not contain the following characters [ , ", *, \\, <, |, ,, >, /, ?, #, :]'
    if problem:
        raise EsError(
            400,
            "invalid_index_name_exception",
            f"Invalid index name [{name}], {problem}",
            index_uuid="_na_",
            index=name,
        )


class Store:
    """All indices and aliases; callers hold `lock` around every use."""

    def __init__(self, refresh_interval: float | None = None) -> None:
        self.lock = threading.RLock()
        self.refresh_interval = refresh_interval
        self.indices: dict[str, Index] = {}
        self.aliases: dict[str, set[str]] = {}
        self._order = itertools.count()

    def reset(self) -> None:
        """Delete every index and alias."""
        self.indices.clear()
        self.aliases.clear()

    def next_order(self) -> int:
        """Return the next global write order number."""
        return next(self._order)

    def create_index(self, name: str, body: dict[str, Any] | None = None) -> Index:
        """Create an index with optional mappings, settings and aliases."""
        validate_index_name(name)
        if name in self.indices or name in self.aliases:
            existing = self.indices.get(name)
            raise EsError(
                400,
                "resource_already_exists_exception",
                f"index [{name}/{existing.uuid if existing else '_na_'}] already exists",
                index_uuid=existing.uuid if existing else "_na_",
                index=name,
            )
        body = body or {}
        properties = (body.get("mappings") or {}).get("properties") or {}
        index = Index(name, Mapping(properties), body.get("settings"))
        try:
            index.refresh_interval(None)
        except ValueError:
            raise EsError(
                400,
                "illegal_argument_exception",
                f"failed to parse value [{index.settings['refresh_interval']}] for setting [index.refresh_interval]",
            ) from None
        self.indices[name] = index
        for alias in body.get("aliases") or {}:
            self.aliases.setdefault(alias, set()).add(name)
        return index

    def write_target(self, name: str) -> Index:
        """Return the index a write to `name` goes to, creating it if needed."""
        if name in self.aliases:
            targets = sorted(self.aliases[name] & self.indices.keys())
            if len(targets) != 1:
                raise EsError(400, "illegal_argument_exception", f"no write index is defined for alias [{name}]")
            return self.indices[targets[0]]
        return self.indices.get(name) or self.create_index(name)

    def delete_indices(self, expression: str) -> list[Index]:
        """Delete the indices an expression names; raise 404 if a concrete one is missing."""
        doomed = self.resolve(expression, aliases=False)
        for index in doomed:
            del self.indices[index.name]
            for members in self.aliases.values():
                members.discard(index.name)
        self.aliases = {a: m for a, m in self.aliases.items() if m}
        return doomed

    def resolve(
        self,
        expression: str | None,
        ignore_unavailable: bool = False,
        allow_no_indices: bool = True,
        aliases: bool = True,
    ) -> list[Index]:
        """Resolve `a,b*,-b2,alias` (or nothing/_all) to indices, like ES index expressions."""
        parts = [p for p in (expression or "_all").split(",") if p]
        chosen: dict[str, Index] = {}
        for part in parts:
            if part.startswith("-") and chosen:
                for name in self._expand(part[1:], aliases):
                    chosen.pop(name, None)
            elif part == "_all" or "*" in part:
                chosen.update((n, self.indices[n]) for n in self._expand(part, aliases))
            else:
                names = self._concrete(part, aliases)
                if names is None and not ignore_unavailable:
                    raise index_not_found(part)
                chosen.update((n, self.indices[n]) for n in names or [])
        if not chosen and not allow_no_indices:
            raise index_not_found(expression or "_all")
        return [chosen[name] for name in sorted(chosen)]

    def _expand(self, pattern: str, aliases: bool) -> list[str]:
        pattern = "*" if pattern == "_all" else pattern
        # Wildcards skip hidden (dot-prefixed) indices unless asked for them.
        visible = [n for n in self.indices if not n.startswith(".") or pattern.startswith(".")]
        names = {n for n in visible if fnmatch.fnmatchcase(n, pattern)}
        if aliases:
            for alias, members in self.aliases.items():
                if fnmatch.fnmatchcase(alias, pattern):
                    names |= members & self.indices.keys()
        return sorted(names)

    def _concrete(self, name: str, aliases: bool) -> list[str] | None:
        if name in self.indices:
            return [name]
        if aliases and name in self.aliases:
            return sorted(self.aliases[name] & self.indices.keys())
        return None

    def resolve_names(self, expression: str, ignore_unavailable: bool = False) -> tuple[list[str], list[str]]:
        """The index and alias names an expression names, unexpanded, as `_resolve/index` lists them."""
        chosen: set[str] = set()
        for part in (p for p in expression.split(",") if p):
            if part.startswith("-") and chosen:
                chosen -= set(self._names(part[1:]))
            elif part == "_all" or "*" in part:
                chosen.update(self._names(part))
            elif part in self.indices or part in self.aliases:
                chosen.add(part)
            elif not ignore_unavailable:
                raise index_not_found(part)
        return sorted(chosen & self.indices.keys()), sorted(chosen & self.aliases.keys())

    def _names(self, pattern: str) -> list[str]:
        pattern = "*" if pattern == "_all" else pattern
        names = [n for n in [*self.indices, *self.aliases] if not n.startswith(".") or pattern.startswith(".")]
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def views(
        self,
        expression: str | None,
        ignore_unavailable: bool = False,
        allow_no_indices: bool = True,
        snapshot: bool = False,
    ) -> list[IndexView]:
        """Return the searchable state of the indices an expression names."""
        indices = self.resolve(expression, ignore_unavailable, allow_no_indices)
        self._periodic_refresh(indices)
        return [index.view(snapshot) for index in indices]

    def _periodic_refresh(self, indices: Iterable[Index]) -> None:
        # Refreshing lazily when searched looks the same from outside as a
        # timer would, and needs no thread.
        now = time.monotonic()
        for index in indices:
            interval = index.refresh_interval(self.refresh_interval)
            if interval is not None and now - index.refreshed_at >= interval:
                index.refresh()

    def refresh(self, expression: str | None) -> int:
        """Refresh the named indices (all when None); return how many."""
        indices = self.resolve(expression)
        for index in indices:
            index.refresh()
        return len(indices)

    def put_alias(self, expression: str, alias: str) -> None:
        """Point an alias at the indices an expression names."""
        for index in self.resolve(expression, aliases=False):
            self.aliases.setdefault(alias, set()).add(index.name)

    def remove_alias(self, expression: str, alias: str) -> None:
        """Remove an alias from the indices an expression names."""
        names = {index.name for index in self.resolve(expression, aliases=False)}
        remaining = self.aliases.get(alias, set()) - names
        if remaining:
            self.aliases[alias] = remaining
        else:
            self.aliases.pop(alias, None)

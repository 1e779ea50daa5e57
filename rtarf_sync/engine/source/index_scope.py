"""Which indices a run answers for: the ones the index setting resolves to at that moment.

    scope = resolve_scope(api, settings, retry).with_vanished(api, retry, names_seen_in_rows)
    scope.admits(row_index)      # may this row be counted, marked or deleted?

The one owner of DESIGN part three's rule "rows answer only to the indices the setting
names": reconciliation (full, range and repair runs), verification and replay ask here.
A closed index in the setting refuses the scope (SourceError): searches skip it, so an
absence seen there would decide nothing. Indices that no longer exist are admitted only
when the setting names them (by name or pattern) and RTARF_DELETE_VANISHED_INDICES=true.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
from functools import partial
from typing import Iterable

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.source.clients import SearchApi
from rtarf_sync.engine.errors import SourceError
from rtarf_sync.engine.retry import RetryPolicy, with_retry

_CHECK_BATCH = 100  # index names per existence check, to keep the URL short


def named_by(setting: str, name: str) -> bool:
    """Whether the index expression `setting` names `name` by itself or by a pattern (exclusions `-x` apply)."""
    named = False
    for part in (part.strip() for part in setting.split(",") if part.strip()):
        if part.startswith("-") and named:
            named = not fnmatch.fnmatchcase(name, part[1:])
        elif part in ("_all", "*") or fnmatch.fnmatchcase(name, part):
            named = True
    return named


@dataclass(frozen=True)
class IndexScope:
    """The concrete open indices of the setting now, and the vanished ones it still names."""

    setting: str
    indices: frozenset[str]
    vanished: frozenset[str] = frozenset()
    include_vanished: bool = False

    def admits(self, name: str) -> bool:
        """Whether rows of index `name` may be counted, marked or deleted."""
        return name in self.indices or (self.include_vanished and name in self.vanished)

    @property
    def admitted(self) -> list[str]:
        """Every admitted index name, sorted."""
        return sorted(self.indices | (self.vanished if self.include_vanished else frozenset()))

    def rows(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
        """SQL: the rows whose `es_index` column is admitted."""
        return column.in_(self.admitted)

    def with_vanished(self, api: SearchApi, retry: RetryPolicy, names: Iterable[str]) -> IndexScope:
        """This scope plus those of `names` (index names seen in rows) that no longer exist and the setting names."""
        asked = sorted({name for name in names if name not in self.indices and named_by(self.setting, name)})
        existing: set[str] = set()
        for start in range(0, len(asked), _CHECK_BATCH):
            batch = ",".join(asked[start : start + _CHECK_BATCH])
            existing |= set(with_retry(partial(api.resolve_indices, batch), retry, "check indices"))
        return replace(self, vanished=self.vanished | {name for name in asked if name not in existing})


def resolve_scope(api: SearchApi, settings: Settings, retry: RetryPolicy) -> IndexScope:
    """The indices RTARF_ES_INDEX resolves to now; a closed one among them raises SourceError naming it."""
    states = with_retry(lambda: api.resolve_indices(settings.es_index), retry, "resolve indices")
    closed = sorted(name for name, is_open in states.items() if not is_open)
    if closed:
        raise SourceError(
            f"index {', '.join(closed[:5])} of {settings.es_index} is closed: the engine cannot "
            "answer for its documents, so nothing is counted, deleted or resolved; open it or "
            "narrow RTARF_ES_INDEX"
        )
    return IndexScope(settings.es_index, frozenset(states), include_vanished=settings.reconcile.delete_vanished_indices)

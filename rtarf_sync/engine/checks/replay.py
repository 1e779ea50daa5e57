"""Dead-letter replay: fetch each set-aside document's current version and write the ones that now convert.

    unresolved dead letters ──ids lookup per index──> current versions
        document gone            -> resolved, counted `gone`
        still fails to convert   -> stays unresolved, counted `still_failing` (known_bad in the run)
        converts                 -> version-guarded upsert, resolved in the same transaction, `replayed`

A replay is a run of its own (trigger and mode "replay") with a sync's lifecycle
(runs/lifecycle.py): every write transaction is fenced, so it never races a sync of another
process. It never moves the stored cursor (a replayed document may be far
newer or older than it), and the sink's version guard keeps a newer row.

Only dead letters of indices the setting resolves to now are looked up; those of
a vanished index the setting names are `gone` (so are documents older than the retention
horizon: their range is out of every scope), those of an index outside the
setting stay unresolved (`outside_scope`). Letters are read, looked up and
written CHUNK at a time; an incomplete engine answer fails the replay and
resolves nothing of its chunk. With nothing to replay (unknown or resolved ids),
no run is written and `ran` is false, so nothing is recorded or sent.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import chain
from typing import TYPE_CHECKING, Any, Iterator, Sequence, cast

import sqlalchemy as sa

from rtarf_sync.engine.checks.dead_letters import DeadLetters
from rtarf_sync.engine.target.documents import EventRow, to_row
from rtarf_sync.engine.target.partitions import horizon
from rtarf_sync.engine.errors import is_data_error
from rtarf_sync.engine.source.filters import source_selection
from rtarf_sync.engine.source.index_scope import IndexScope, resolve_scope
from rtarf_sync.engine.fence import Fence
from rtarf_sync.engine.runs.renewal import LeaseKeeper
from rtarf_sync.engine.source.reader import check_complete
from rtarf_sync.engine.runs.result import SUCCESS, SyncResult
from rtarf_sync.engine.retry import with_retry

if TYPE_CHECKING:
    from rtarf_sync.engine.runs.sync import SyncService

log = logging.getLogger("rtarf_sync.replay")
TRIGGER = MODE = "replay"
CHUNK = 500  # ids per lookup and per write transaction


@dataclass
class ReplayOutcome:
    """What a replay did to the dead letters it was given, and its run."""

    result: SyncResult
    replayed: int = 0
    still_failing: int = 0
    gone: int = 0
    already_resolved: int = 0
    outside_scope: int = 0
    not_found: list[int] = field(default_factory=list)
    ran: bool = False  # False: nothing to replay, no run written; record and notify nothing

    def to_dict(self) -> dict[str, Any]:
        """The API's answer: the three counts of docs/design.md first, then the details."""
        return {
            "replayed": self.replayed,
            "still_failing": self.still_failing,
            "gone": self.gone,
            "already_resolved": self.already_resolved,
            "outside_scope": self.outside_scope,
            "not_found": self.not_found,
            "run_id": self.result.run_id,
            "status": self.result.status,
        }


@dataclass
class _Chunk:
    """Dead letters of one index, with what the engine answered for them."""

    rows: list[EventRow] = field(default_factory=list)
    written_ids: list[int] = field(default_factory=list)  # resolved when their row is written
    ids_of: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # es_id -> letters
    gone_ids: list[int] = field(default_factory=list)
    failing: int = 0


def _chunks(letters: list[dict[str, Any]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    by_index: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for letter in letters:
        by_index[letter["es_index"]].append(letter)
    for index, group in by_index.items():
        for start in range(0, len(group), CHUNK):
            yield index, group[start : start + CHUNK]


class DeadLetterReplay:
    """Replays dead letters of one SyncService's target."""

    def __init__(self, service: SyncService) -> None:
        self.service = service
        self.letters = DeadLetters(service.engine, service.tables)

    def run(self, ids: Sequence[int] | None = None) -> ReplayOutcome:
        """Replay these dead letters (all unresolved ones when None); never raises for a failed replay."""
        outcome = ReplayOutcome(SyncResult(trigger=TRIGGER, mode=MODE, started_at=datetime.now(timezone.utc)))
        result = outcome.result
        pages: Iterator[list[dict[str, Any]]] = iter(())

        def prepare() -> bool:
            nonlocal pages
            self.service.ensure_tables()
            first = next(found := self._pages(ids, outcome), [])
            if not first:
                result.status = SUCCESS  # nothing to replay: no run, nothing to tell anyone
                return False
            outcome.ran, pages = True, chain([first], found)
            return True

        def work(fence: Fence, keeper: LeaseKeeper) -> None:
            scope = resolve_scope(self.service.api, self.service.settings, self.service.retry)
            for page in pages:
                keeper.check()
                self._replay_page(page, scope, fence, outcome)
            result.status = SUCCESS

        self.service.lifecycle("replay", log).run(result, prepare, work)
        return outcome

    def _pages(self, ids: Sequence[int] | None, outcome: ReplayOutcome) -> Iterator[list[dict[str, Any]]]:
        """The unresolved letters to replay, CHUNK at a time (given ids are few: the API takes 10,000 at most)."""
        if ids is None:
            after = 0
            while page := self.letters.unresolved_after(after, CHUNK):
                yield page
                after = page[-1]["id"]
            return
        rows = self.letters.rows(ids)
        outcome.not_found = sorted(set(ids) - {row["id"] for row in rows})
        outcome.already_resolved = sum(1 for row in rows if row["resolved_at"] is not None)
        pending = [row for row in rows if row["resolved_at"] is None]
        for start in range(0, len(pending), CHUNK):
            yield pending[start : start + CHUNK]

    def _replay_page(self, page: list[dict[str, Any]], scope: IndexScope, fence: Fence, outcome: ReplayOutcome) -> None:
        """Look up the letters of indices in scope; those of vanished indices the setting names are gone."""
        names = {letter["es_index"] for letter in page} - scope.indices
        if names:
            scope = scope.with_vanished(self.service.api, self.service.retry, names)
        gone = [letter["id"] for letter in page if letter["es_index"] in scope.vanished]
        outcome.outside_scope += sum(1 for letter in page if letter["es_index"] in names - scope.vanished)
        if gone:
            self._write([], gone, fence)
            outcome.gone += len(gone)
        for index, letters in _chunks([letter for letter in page if letter["es_index"] in scope.indices]):
            self._replay_chunk(index, letters, fence, outcome)

    def _lookup(self, index: str, letters: list[dict[str, Any]]) -> _Chunk:
        """Ask the engine for the current version of each document and sort the letters by outcome."""
        service, settings = self.service, self.service.settings
        doc_ids = sorted({letter["es_id"] for letter in letters})
        # An answer with failed shards or timed out is retried, then fails the replay: absent there is not gone.
        answer = with_retry(
            lambda: check_complete(
                service.api.find_ids(index, doc_ids, settings.query, source_selection(settings)),
                f"search {index} by id",
            ),
            service.retry,
            f"search {index} by id",
        )
        hits = cast(list[dict[str, Any]], answer.hits)  # find_ids answers plain JSON, not typed pages
        current = {hit["_id"]: hit for hit in hits if hit.get("_index", index) == index}
        chunk = _Chunk()
        converted: dict[str, EventRow | None] = {}
        for doc_id, hit in current.items():
            row = to_row(hit, settings.cursor_field, settings.max_document_bytes, service.tables.columns)
            converted[doc_id] = row if isinstance(row, EventRow) else None
        for letter in letters:
            if letter["es_id"] not in current:
                chunk.gone_ids.append(letter["id"])
            elif converted[letter["es_id"]] is None:
                chunk.failing += 1
            else:
                chunk.written_ids.append(letter["id"])
                chunk.ids_of[letter["es_id"]].append(letter["id"])
        chunk.rows = [row for row in converted.values() if row is not None]
        return chunk

    def _replay_chunk(self, index: str, letters: list[dict[str, Any]], fence: Fence, outcome: ReplayOutcome) -> None:
        chunk = self._past_retention(self._lookup(index, letters))
        try:
            inserted, updated = self._write(chunk.rows, chunk.written_ids + chunk.gone_ids, fence)
        except sa.exc.DBAPIError as error:
            if not is_data_error(error):
                raise
            inserted, updated, refused = self._write_each(chunk, fence)
            chunk.failing += refused
        written = len(chunk.rows)
        outcome.replayed += len(chunk.written_ids)
        outcome.gone += len(chunk.gone_ids)
        outcome.still_failing += chunk.failing
        outcome.result.add(inserted, updated, written - inserted - updated, 0, chunk.failing)
        self._count(outcome.result)

    def _past_retention(self, chunk: _Chunk) -> _Chunk:
        """Documents older than the retention horizon are out of scope: their letters are resolved as gone."""
        floor = horizon(self.service.settings)
        if floor is None:
            return chunk
        expired = {row.es_id for row in chunk.rows if row.event_timestamp is not None and row.event_timestamp < floor}
        if expired:
            chunk.rows = [row for row in chunk.rows if row.es_id not in expired]
            dropped = {letter for es_id in expired for letter in chunk.ids_of[es_id]}
            chunk.written_ids = [letter for letter in chunk.written_ids if letter not in dropped]
            chunk.gone_ids += sorted(dropped)
        return chunk

    def _write(self, rows: list[EventRow], resolved: list[int], fence: Fence) -> tuple[int, int]:
        """One fenced transaction: upsert the rows and resolve their dead letters together."""
        service = self.service
        with service.engine.begin() as connection:
            service.lease.fence(connection, fence)
            counts = service.sink.upsert(connection, rows)
            self.letters.resolve(connection, resolved)
        return counts

    def _write_each(self, chunk: _Chunk, fence: Fence) -> tuple[int, int, int]:
        """PostgreSQL refused a row of the chunk: write document by document; refused ones stay unresolved."""
        inserted = updated = refused = 0
        ids_of = chunk.ids_of
        kept: list[int] = []
        kept_rows: list[EventRow] = []
        for row in chunk.rows:
            try:
                one_inserted, one_updated = self._write([row], ids_of[row.es_id], fence)
            except sa.exc.DBAPIError as error:
                if not is_data_error(error):
                    raise
                refused += len(ids_of[row.es_id])
                continue
            inserted, updated = inserted + one_inserted, updated + one_updated
            kept.extend(ids_of[row.es_id])
            kept_rows.append(row)
        self._write([], chunk.gone_ids, fence)
        chunk.written_ids, chunk.rows = kept, kept_rows
        return inserted, updated, refused

    def _count(self, result: SyncResult) -> None:
        """Keep the run's history row in step with its counts (a replay has no page transaction of its own)."""
        runs = self.service.tables.runs
        with self.service.engine.begin() as connection:
            connection.execute(
                sa.update(runs)
                .where(runs.c.id == result.run_id)
                .values(
                    pages=result.pages,
                    total_processed=result.total_processed,
                    inserted=result.inserted,
                    updated=result.updated,
                    unchanged=result.unchanged,
                    known_bad=result.known_bad,
                )
            )

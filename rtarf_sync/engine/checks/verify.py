"""Verification: is PostgreSQL in step with the engine? Counts per time bucket, no documents read.

    window = plan_window(settings, now=now, cursor=stored_cursor)     # or explicit from/to/bucket
    verification = Verifier(service).check(window)
    verification.in_step, verification.differing

One `date_histogram` aggregation over the index setting counts the engine's
documents per UTC bucket of the cursor field (plus, in the same request, the
documents without the cursor field); one SQL query counts the live rows
(`deleted_at IS NULL`) per bucket of `event_timestamp` (plus the rows without
one) of the indices the setting resolves to now (index_scope.py): rows of an
index the setting no longer names are not drift. Both counts are taken while holding the sync lease, so no run of any
process writes between them. Every verification is stored in
`rtarf_sync_verifications`, pruned after RTARF_RUN_HISTORY_DAYS like runs.

`in_step` compares the buckets only: a document without the cursor field has
no time, can never be a row (the sync sets it aside as a dead letter), and a
range run cannot repair it; it is reported in `missing_cursor` on both sides.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.source.clients import Json, SearchApi
from rtarf_sync.engine.source.filters import filtered
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.source.index_scope import IndexScope, resolve_scope
from rtarf_sync.engine.runs.plan import millis
from rtarf_sync.engine.runs.lease import holding
from rtarf_sync.engine.source.reader import check_complete
from rtarf_sync.engine.runs.result import utc_iso
from rtarf_sync.engine.retry import with_retry
from rtarf_sync.engine.target.partitions import horizon
from rtarf_sync.engine.target.tables import Tables

if TYPE_CHECKING:
    from rtarf_sync.engine.runs.sync import SyncService

log = logging.getLogger("rtarf_sync.verify")

BUCKETS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
DEFAULT_BUCKET = "1h"
MAX_BUCKETS = 50_000  # an engine answers at most search.max_buckets (65,536 by default)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class WindowError(ValueError):
    """A verification window that cannot be checked; `field` names the request field at fault."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class Window:
    """The half-open range [start, end) to verify, cut into UTC buckets of `bucket`."""

    start: datetime
    end: datetime
    bucket: str

    @property
    def width(self) -> timedelta:
        """One bucket's length."""
        return BUCKETS[self.bucket]

    def bucket_of(self, moment: datetime) -> datetime:
        """The UTC start of the bucket holding `moment`."""
        return moment - (moment - _EPOCH) % self.width

    def edges(self, key: datetime) -> tuple[datetime, datetime]:
        """The part of bucket `key` inside the window: what both sides counted, and what a repair reads."""
        return max(key, self.start), min(key + self.width, self.end)


def plan_window(
    settings: Settings,
    *,
    now: datetime,
    cursor: datetime | None,
    start: datetime | None = None,
    end: datetime | None = None,
    bucket: str | None = None,
) -> Window:
    """The window to verify; defaults: the last lookback hours ending at now - settle - overlap.

    A default end never passes the stored cursor minus the overlap: events the incremental
    sync has not reached yet are in flight, not drift. Raises WindowError naming the field.
    """
    bucket = DEFAULT_BUCKET if bucket is None else bucket
    if bucket not in BUCKETS:
        raise WindowError("bucket", f"bucket must be one of {', '.join(BUCKETS)}, not {bucket!r}")
    if end is None:
        end = now - timedelta(seconds=settings.settle_seconds + settings.overlap_seconds)
        if cursor is not None:
            end = min(end, cursor - timedelta(seconds=settings.overlap_seconds))
    if start is None:
        start = end - timedelta(hours=settings.verify.lookback_hours)
    start, end = millis(start), millis(end)
    floor = horizon(settings, now)
    if floor is not None and start < floor:  # dropped by retention, or about to be: not drift
        if end <= floor:
            raise WindowError("from", f"the window ends before the retention horizon ({utc_iso(floor)})")
        start = millis(floor)
    if start >= end:
        raise WindowError("from", f"from ({utc_iso(start)}) must be before to ({utc_iso(end)})")
    window = Window(start, end, bucket)
    count = (window.bucket_of(end - timedelta(microseconds=1)) - window.bucket_of(start)) // window.width + 1
    if count > MAX_BUCKETS:
        raise WindowError(
            "bucket",
            f"the window holds {count} buckets of {bucket}, more than {MAX_BUCKETS}: "
            "use a shorter window or a larger bucket",
        )
    return window


@dataclass(frozen=True)
class Difference:
    """One bucket whose counts differ: its part of the window and both counts."""

    start: datetime
    end: datetime
    source: int
    target: int

    def to_dict(self) -> dict[str, Any]:
        """As the API shows it."""
        return {"from": utc_iso(self.start), "to": utc_iso(self.end), "source": self.source, "target": self.target}


@dataclass
class Verification:
    """Both sides' counts for one window, compared."""

    window: Window
    source: dict[datetime, int]
    target: dict[datetime, int]
    missing_source: int
    missing_target: int
    checked_at: datetime
    id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def differing(self) -> list[Difference]:
        """The buckets whose counts differ, oldest first."""
        keys = sorted(set(self.source) | set(self.target))
        return [
            Difference(*self.window.edges(key), self.source.get(key, 0), self.target.get(key, 0))
            for key in keys
            if self.source.get(key, 0) != self.target.get(key, 0)
        ]

    @property
    def in_step(self) -> bool:
        """True when every bucket holds as many live rows as the engine holds documents."""
        return not self.differing

    def to_dict(self, repaired: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The answer (docs/design.md) of POST /scheduler/verify (plus `verification_id` and anything in `extra`)."""
        return {
            "in_step": self.in_step,
            "from": utc_iso(self.window.start),
            "to": utc_iso(self.window.end),
            "bucket": self.window.bucket,
            "source_total": sum(self.source.values()),
            "target_total": sum(self.target.values()),
            "differing": [difference.to_dict() for difference in self.differing],
            "missing_cursor": {"source": self.missing_source, "target": self.missing_target},
            "repaired": repaired,
            "checked_at": utc_iso(self.checked_at),
            "verification_id": self.id,
            **self.extra,
        }


def source_query(cursor_field: str, window: Window, query: Json | None = None) -> tuple[Json, Json]:
    """The query and aggregations of the engine side: documents in the window or without the field
    (and matching the pipeline's `query`)."""
    in_window = {
        "range": {
            cursor_field: {
                "gte": engine_time(window.start),
                "lt": engine_time(window.end),
                "format": "strict_date_optional_time",
            }
        }
    }
    without = {"bool": {"must_not": [{"exists": {"field": cursor_field}}]}}
    scope = filtered(query, {"bool": {"should": [in_window, without], "minimum_should_match": 1}})
    aggs = {
        "events": {
            "date_histogram": {
                "field": cursor_field,
                "fixed_interval": window.bucket,
                "time_zone": "UTC",
                "min_doc_count": 1,
            }
        },
        "missing_cursor": {"missing": {"field": cursor_field}},
    }
    return scope, aggs


def source_counts(
    api: SearchApi, index: str, cursor_field: str, window: Window, query: Json | None = None
) -> tuple[dict[datetime, int], int]:
    """Documents per bucket and documents without the cursor field, from one aggregation request."""
    scope, aggs = source_query(cursor_field, window, query)
    answer = api.aggregate(index, scope, aggs)
    check_complete(answer, "verification count")
    found = answer.get("aggregations") or {}
    counts: dict[datetime, int] = {}
    for bucket in (found.get("events") or {}).get("buckets", []):
        if bucket["doc_count"]:
            moment = datetime.fromtimestamp(int(bucket["key"]) / 1000, tz=timezone.utc)
            counts[window.bucket_of(moment)] = int(bucket["doc_count"])
    return counts, int((found.get("missing_cursor") or {}).get("doc_count", 0))


_STRIDE = {"1h": "1 hour", "1d": "1 day"}


def target_counts(
    connection: sa.Connection, tables: Tables, window: Window, scope: IndexScope
) -> tuple[dict[datetime, int], int]:
    """Live rows of admitted indices per bucket, and those without event_timestamp, from one SQL query."""
    target = tables.target
    stamp = target.c.event_timestamp
    # Fixed strides from a UTC midnight: UTC hours and days whatever the session zone, and one
    # integer step per row (date_trunc on the UTC wall time costs two zone conversions more).
    # Constants as literals, not bind parameters: GROUP BY must see the very same expression.
    stride: sa.ColumnClause[str] = sa.literal_column(f"interval '{_STRIDE[window.bucket]}'")
    origin: sa.ColumnClause[str] = sa.literal_column("timestamptz '2000-01-01 00:00:00+00'")
    key = sa.func.date_bin(stride, stamp, origin).label("bucket")
    in_window = sa.and_(stamp >= window.start, stamp < window.end)
    rows = connection.execute(
        sa.select(key, sa.func.count().label("rows"))
        .select_from(target)
        .where(target.c.deleted_at.is_(None), sa.or_(in_window, stamp.is_(None)), scope.rows(target.c.es_index))
        .group_by(key)
    ).all()
    counts = {row.bucket.astimezone(timezone.utc): int(row.rows) for row in rows if row.bucket is not None}
    missing = sum(int(row.rows) for row in rows if row.bucket is None)
    return counts, missing


def indices_in_window(connection: sa.Connection, tables: Tables, window: Window) -> list[str]:
    """The indices of the live rows the window counts (to tell vanished indices from foreign ones)."""
    target = tables.target
    stamp = target.c.event_timestamp
    return list(
        connection.execute(
            sa.select(target.c.es_index)
            .distinct()
            .where(
                target.c.deleted_at.is_(None),
                sa.or_(sa.and_(stamp >= window.start, stamp < window.end), stamp.is_(None)),
            )
        ).scalars()
    )


class Verifier:
    """Counts both sides of one target under the lease, and keeps the verifications."""

    def __init__(self, service: SyncService) -> None:
        self.service = service
        self.settings = service.settings
        self.tables = service.tables

    def default_window(self, now: datetime | None = None, **explicit: Any) -> Window:
        """plan_window with the stored cursor; `explicit` takes start, end and bucket."""
        self.service.ensure_tables()
        cursor = self.service.sink.load_cursor()
        return plan_window(self.settings, now=now or datetime.now(timezone.utc), cursor=cursor, **explicit)

    def check(self, window: Window) -> Verification:
        """Count both sides while holding the lease (raises LeaseHeld if a run holds it) and store the result."""
        service, s = self.service, self.settings
        service.ensure_tables()
        with holding(service.engine, service.lease, "verify"):
            scope = resolve_scope(service.api, s, service.retry)
            source, missing_source = with_retry(
                lambda: source_counts(service.api, s.es_index, s.cursor_field, window, s.query),
                service.retry,
                "verification count",
            )
            if scope.include_vanished:  # rows of vanished indices count only when a repair would delete them
                with service.engine.connect() as connection:
                    names = indices_in_window(connection, self.tables, window)
                scope = scope.with_vanished(service.api, service.retry, names)
            with service.engine.connect() as connection:
                target, missing_target = target_counts(connection, self.tables, window, scope)
        verification = Verification(window, source, target, missing_source, missing_target, datetime.now(timezone.utc))
        verification.id = self._store(verification)
        log.info(
            "Verification of %s to %s by %s: %s (%d documents, %d rows, %d buckets differing)",
            utc_iso(window.start),
            utc_iso(window.end),
            window.bucket,
            "in step" if verification.in_step else "NOT in step",
            sum(source.values()),
            sum(target.values()),
            len(verification.differing),
        )
        return verification

    def _store(self, verification: Verification) -> int:
        table, window = self.tables.verifications, verification.window
        with self.service.engine.begin() as connection:
            connection.execute(
                sa.delete(table).where(
                    table.c.target_table == self.tables.target.name,
                    table.c.checked_at < sa.func.now() - timedelta(days=self.settings.run_history_days),
                )
            )
            row_id = int(
                connection.execute(
                    sa.insert(table)
                    .values(
                        target_table=self.tables.target.name,
                        source_index=self.settings.es_index,
                        checked_at=verification.checked_at,
                        range_from=window.start,
                        range_to=window.end,
                        bucket=window.bucket,
                        source_total=sum(verification.source.values()),
                        target_total=sum(verification.target.values()),
                        buckets_differing=len(verification.differing),
                        in_step=verification.in_step,
                        result={},
                    )
                    .returning(table.c.id)
                ).scalar_one()
            )
            verification.id = row_id
            connection.execute(sa.update(table).where(table.c.id == row_id).values(result=verification.to_dict()))
            return row_id

    def record_answer(self, verification: Verification, answer: dict[str, Any]) -> None:
        """Store the final answer (with repairs) in the verification's row."""
        if verification.id is None:
            return
        table = self.tables.verifications
        with self.service.engine.begin() as connection:
            connection.execute(sa.update(table).where(table.c.id == verification.id).values(result=answer))

    def latest(self) -> dict[str, Any] | None:
        """The newest stored verification answer of this target, if any."""
        table = self.tables.verifications
        with self.service.engine.connect() as connection:
            return connection.execute(
                sa.select(table.c.result)
                .where(table.c.target_table == self.tables.target.name)
                .order_by(table.c.id.desc())
                .limit(1)
            ).scalar()

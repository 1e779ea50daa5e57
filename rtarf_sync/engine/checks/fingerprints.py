"""Fingerprints: which short time buckets of a window differ between the engine and PostgreSQL.

    comparison = compare(api, connection, tables, settings, start, end, width, target_only_differs=False)
    comparison.ranges       # the differing buckets, adjacent ones merged: only these need reading
    comparison.confirmed    # documents of the matching buckets: stored, at the very version the engine has

A bucket's fingerprint, per index, is what identifies the versions in it without reading a
document: how many there are, the sum, least and greatest of their `_seq_no`, and the sum of
their cursor values in milliseconds. The engine answers it in one aggregation request
(`terms` on `_index`, a `date_histogram` beneath, four metrics beneath that); PostgreSQL in
one query over the live rows (`deleted_at IS NULL`). A document new to PostgreSQL changes the
count, a newer version of a stored one raises its `_seq_no` (sequence numbers only grow, and a
document never leaves its shard), so a bucket whose fingerprints agree holds the same versions
on both sides. Two changes that cancel out in all five figures at once (a document deleted from
the engine and another arriving late in the same second of the same index, on another shard,
with the very same sequence number and the same time to the millisecond) are beyond them; a
full run (`mode=full`) reads every key and finds even that.

Every doubt reads: an engine that answers no fingerprint, more indices than one request lists,
rows without a sequence number, times the two sides see differently: each makes a bucket differ,
so it is read as it would be without fingerprints. Sums past 2^53 (a second of more than about
5,100 events in one index) are exact on neither side and match within their rounding (`matches`).

Incremental runs read only the differing buckets of their overlap (`target_only_differs=False`:
rows the engine no longer has are left alone by an incremental run anyway); repairs narrow each
bucket to the span of its differing sub-buckets (`True`: such rows are what a repair deletes).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION

from config import Settings
from rtarf_sync.engine.errors import LeaseLost, RunInterrupted, TooManyBuckets, redact
from rtarf_sync.engine.retry import with_retry
from rtarf_sync.engine.source.clients import Json, SearchApi
from rtarf_sync.engine.source.filters import filtered
from rtarf_sync.engine.source.reader import check_complete
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.target.tables import Tables
from rtarf_sync.logs import secret_values

if TYPE_CHECKING:
    from rtarf_sync.engine.runs.sync import SyncService

log = logging.getLogger("rtarf_sync.fingerprints")

MAX_INDICES = 1_000  # indices one request lists; more and the window is read whole
COARSER = 8  # parts this many times as wide, asked for when the engine refuses as many buckets
EXACT_SUM = 2.0**53  # sums below this are exact on both sides, and compared exactly
ROUNDING = 4  # units in the last place two sums past EXACT_SUM may differ by
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLI = timedelta(milliseconds=1)

Key = tuple[str, int]  # (index, bucket start in epoch milliseconds)


@dataclass(frozen=True)
class Fingerprint:
    """What identifies the versions of one index's documents in one bucket (sums as the engine gives them)."""

    count: int
    seq_sum: float
    seq_min: float | None
    seq_max: float | None
    cursor_sum: float

    def matches(self, other: Fingerprint | None) -> bool:
        """The same versions: every figure equal, sums past a double's exact range within their rounding."""
        return (
            other is not None
            and (self.count, self.seq_min, self.seq_max) == (other.count, other.seq_min, other.seq_max)
            and _same_sum(self.seq_sum, other.seq_sum)
            and _same_sum(self.cursor_sum, other.cursor_sum)
        )


def _same_sum(one: float, other: float) -> bool:
    """Equal, or both past 2^53 and within ROUNDING units in the last place of each other.

    Past 2^53 neither side is exact: the engine adds doubles with compensation, PostgreSQL adds
    exactly and rounds once, and the two may differ in the last place or two. A difference that
    small is already below what a double can tell apart there (a millisecond is under one unit)."""
    if one == other:
        return True
    largest = max(abs(one), abs(other))
    return largest >= EXACT_SUM and abs(one - other) <= ROUNDING * math.ulp(largest)


@dataclass
class Comparison:
    """The outcome of comparing one window: the differing ranges and what the matching buckets hold."""

    start: datetime
    end: datetime
    width: timedelta
    differing: list[int] = field(default_factory=list)  # bucket starts (epoch ms), ascending
    confirmed: int = 0  # engine documents in matching buckets
    source_differing: int = 0  # engine documents in differing buckets
    target_differing: int = 0  # live rows of those same (index, bucket) pairs

    @property
    def ranges(self) -> list[tuple[datetime, datetime]]:
        """The differing buckets as [start, end) ranges inside the window, adjacent ones merged."""
        step = self.width // _MILLI
        merged: list[list[int]] = []
        for key in self.differing:
            if merged and merged[-1][1] == key:
                merged[-1][1] = key + step
            else:
                merged.append([key, key + step])
        return [(max(self.start, _moment(a)), min(self.end, _moment(b))) for a, b in merged]

    @property
    def stored_share(self) -> float:
        """How much of the differing buckets PostgreSQL already holds (1.0 when nothing differs)."""
        if self.source_differing <= 0:
            return 1.0
        return min(self.target_differing, self.source_differing) / self.source_differing


def _moment(millis: int) -> datetime:
    return _EPOCH + millis * _MILLI


def _millis(moment: datetime) -> int:
    return (moment - _EPOCH) // _MILLI


def source_request(cursor_field: str, start: datetime, end: datetime, width: timedelta, query: Json | None) -> Json:
    """The query and aggregations of the engine side, for documents with cursor values in [start, end)."""
    in_window = {
        "range": {
            cursor_field: {"gte": engine_time(start), "lt": engine_time(end), "format": "strict_date_optional_time"}
        }
    }
    metrics = {
        "seq_sum": {"sum": {"field": "_seq_no"}},
        "seq_min": {"min": {"field": "_seq_no"}},
        "seq_max": {"max": {"field": "_seq_no"}},
        "cursor_sum": {"sum": {"field": cursor_field}},
    }
    histogram = {
        "date_histogram": {
            "field": cursor_field,
            "fixed_interval": f"{int(width.total_seconds())}s",
            "time_zone": "UTC",
            "min_doc_count": 1,
        },
        "aggs": metrics,
    }
    aggs = {"indices": {"terms": {"field": "_index", "size": MAX_INDICES}, "aggs": {"buckets": histogram}}}
    return {"query": filtered(query, in_window), "aggs": aggs}


def _value(metric: Any) -> float | None:
    value = (metric or {}).get("value")
    return None if value is None else float(value)


def source_fingerprints(
    api: SearchApi, index: str, cursor_field: str, start: datetime, end: datetime, width: timedelta, query: Json | None
) -> dict[Key, Fingerprint] | None:
    """The engine's fingerprints of [start, end), or None when its answer cannot narrow anything."""
    request = source_request(cursor_field, start, end, width, query)
    answer = api.aggregate(index, request["query"], request["aggs"])
    check_complete(answer, "fingerprints")
    indices = (answer.get("aggregations") or {}).get("indices") or {}
    if indices.get("sum_other_doc_count", 0):
        return None  # more indices than one request lists
    prints: dict[Key, Fingerprint] = {}
    for per_index in indices.get("buckets", []):
        name = str(per_index["key"])
        for bucket in (per_index.get("buckets") or {}).get("buckets", []):
            prints[(name, int(bucket["key"]))] = Fingerprint(
                int(bucket["doc_count"]),
                _value(bucket.get("seq_sum")) or 0.0,
                _value(bucket.get("seq_min")),
                _value(bucket.get("seq_max")),
                _value(bucket.get("cursor_sum")) or 0.0,
            )
    return prints


def target_fingerprints(
    connection: sa.Connection, tables: Tables, start: datetime, end: datetime, width: timedelta
) -> dict[Key, Fingerprint]:
    """PostgreSQL's fingerprints of the live rows with event_timestamp in [start, end), from one query."""
    target = tables.target
    stamp = target.c.event_timestamp
    seq = target.c.es_seq_no
    # Literals, not bind parameters: GROUP BY must see the very same expression as the select list.
    stride: sa.ColumnClause[Any] = sa.literal_column(f"interval '{int(width.total_seconds())} seconds'")
    origin: sa.ColumnClause[Any] = sa.literal_column("timestamptz '1970-01-01 00:00:00+00'")
    key = sa.func.date_bin(stride, stamp, origin).label("bucket")
    millis = _epoch_millis(stamp)
    rows = connection.execute(
        sa.select(
            target.c.es_index,
            key,
            sa.func.count().label("rows"),
            sa.func.count(seq).label("sequenced"),
            sa.func.sum(seq).label("seq_sum"),
            sa.func.min(seq).label("seq_min"),
            sa.func.max(seq).label("seq_max"),
            sa.func.sum(millis).label("cursor_sum"),
        )
        .where(target.c.deleted_at.is_(None), stamp >= start, stamp < end)
        .group_by(target.c.es_index, key)
    ).all()
    prints: dict[Key, Fingerprint] = {}
    for row in rows:
        if row.sequenced != row.rows:  # a row without a sequence number can match nothing: read its bucket
            continue
        prints[(row.es_index, _millis(row.bucket))] = Fingerprint(
            int(row.rows),
            float(row.seq_sum),
            float(row.seq_min),
            float(row.seq_max),
            float(row.cursor_sum),
        )
    return prints


def _epoch_millis(stamp: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
    """Whole milliseconds since the epoch, as the engine sums its cursor field: a bigint, so sums are exact.

    `extract` answers in numeric, whose arithmetic over every row of a 60 s overlap at 5,000
    events/s cost about as much as the rest of the query. `date_part` answers in a double, which
    holds any time within 2^32 s of the epoch (1834 to 2106) to a quarter of a microsecond or
    better: rounded to whole microseconds first, it gives the exact value (outside that span a
    bucket can only differ, so it is read). The sum must not be one of doubles: past 2^53 (about
    5,100 events in one second) doubles added one by one drift from the engine's compensated sum."""
    seconds = sa.func.date_part(sa.literal_column("'epoch'"), stamp)
    micros = sa.func.round(seconds * sa.cast(1_000_000, DOUBLE_PRECISION))
    return sa.cast(sa.func.floor(micros / sa.cast(1_000, DOUBLE_PRECISION)), sa.BigInteger)


def compare_prints(
    comparison: Comparison,
    source: dict[Key, Fingerprint],
    target: dict[Key, Fingerprint],
    *,
    target_only_differs: bool,
) -> Comparison:
    """Fill `comparison` from both sides' fingerprints."""
    differing: set[int] = set()
    for key, print_ in source.items():
        if not print_.matches(target.get(key)):
            differing.add(key[1])
    if target_only_differs:
        differing.update(key[1] for key in target if key not in source)
    for (name, bucket), print_ in source.items():
        if bucket in differing:
            comparison.source_differing += print_.count
            stored = target.get((name, bucket))
            comparison.target_differing += stored.count if stored is not None else 0
        else:
            comparison.confirmed += print_.count
    comparison.differing = sorted(differing)
    return comparison


def compare_or_read(
    service: SyncService, start: datetime, end: datetime, width: timedelta, *, target_only_differs: bool, what: str
) -> Comparison | None:
    """`compare` for `service`, with its retries; None, with a warning saying `what` is read instead, on failure.

    An engine that answers fewer buckets than asked (its `search.max_buckets`) is asked again in
    parts COARSER times as wide, until one part would hold the whole window.
    """

    def attempt(width: timedelta) -> Comparison | None:
        with service.engine.connect() as connection:
            return compare(
                service.api,
                connection,
                service.tables,
                service.settings,
                start,
                end,
                width,
                target_only_differs=target_only_differs,
            )

    try:
        while True:
            try:
                comparison = with_retry(partial(attempt, width), service.retry, "compare fingerprints")
                break
            except TooManyBuckets:
                if width * COARSER >= end - start:
                    raise
                width *= COARSER
                log.info("The engine answers fewer buckets than asked: comparing in parts of %s", width)
    except (LeaseLost, RunInterrupted):
        raise
    except Exception as error:  # noqa: BLE001 - fingerprints only save reading; without them all is read
        log.warning(
            "Reading %s: fingerprints could not be compared (%s: %s)",
            what,
            type(error).__name__,
            redact(str(error), secret_values(service.settings)),
        )
        return None
    if comparison is None:
        log.info("Reading %s: the engine lists more indices than one fingerprint request holds", what)
    return comparison


def compare(
    api: SearchApi,
    connection: sa.Connection,
    tables: Tables,
    settings: Settings,
    start: datetime,
    end: datetime,
    width: timedelta,
    *,
    target_only_differs: bool,
) -> Comparison | None:
    """Compare [start, end) in buckets of `width` (whole seconds); None when the engine cannot narrow it."""
    if end <= start:
        return Comparison(start, end, width)
    source = source_fingerprints(api, settings.es_index, settings.cursor_field, start, end, width, settings.query)
    if source is None:
        return None
    target = target_fingerprints(connection, tables, start, end, width)
    comparison = compare_prints(Comparison(start, end, width), source, target, target_only_differs=target_only_differs)
    log.debug(
        "Fingerprints of %s to %s: %d buckets differ, %d documents confirmed",
        start.isoformat(),
        end.isoformat(),
        len(comparison.differing),
        comparison.confirmed,
    )
    return comparison

"""What a run reads: its mode, its window, and the rows of the target it answers for.

    incremental  stored cursor - overlap .. now - settle     cursor moves (forward only)
    full         everything up to now - settle, and          cursor moves (forward only)
                 documents without the cursor field
    range        start <= cursor field < end                 cursor never moves

`full` and `range` read their whole scope from one point in time, so afterwards
a live row in that scope which was not read is a candidate deletion
(reconcile.py decides). The scope's rows are selected by `event_timestamp`, the
same value the read filters on, so the two sides cover the same events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import sqlalchemy as sa

from config import Settings
from rtarf_sync.engine.source.clients import Json
from rtarf_sync.engine.target.documents import engine_time
from rtarf_sync.engine.source.filters import filtered, source_selection
from rtarf_sync.engine.source.reader import ReadPlan
from rtarf_sync.engine.target.partitions import horizon

INCREMENTAL, FULL, RANGE = "incremental", "full", "range"
MODES = (INCREMENTAL, FULL, RANGE)


def check_run(mode: str, start: datetime | None, end: datetime | None) -> None:
    """Refuse run arguments that make no sense; the message names the argument."""
    if mode not in MODES:
        raise ValueError(f"mode: {mode!r} is not one of {', '.join(MODES)}")
    if mode != RANGE:
        if start is not None or end is not None:
            raise ValueError(f"{'start' if start is not None else 'end'}: only a range run takes a range")
        return
    for name, value in (("start", start), ("end", end)):
        if value is None:
            raise ValueError(f"{name}: a range run needs both start and end")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name}: {value.isoformat()} has no time zone")
    assert start is not None and end is not None
    if start >= end:
        raise ValueError(f"start: {start.isoformat()} is not before end {end.isoformat()}")


# Instants a caller may give (cursor, range, verification window). Python's datetime ends at years
# 1 and 9999, and a run moves its bounds by up to ten years (overlap and the verification lookback are
# capped at 3650 days by config/), plus a settle delay and a one-day bucket; an instant outside
# these years would overflow inside a run, every run, instead of being refused once at the door.
# Engines and PostgreSQL handle these years (four digits, as the engines' date formats want).
EARLIEST = datetime(1000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9000, 1, 1, tzinfo=timezone.utc)


def parse_bound(text: str, *, naive_utc: bool = False) -> datetime:
    """An ISO-8601 instant with a time zone (`Z` or `+07:00`) from EARLIEST to LATEST; ValueError says what is wrong.

    A time without a zone is refused unless `naive_utc`: read in the wrong zone, a range would
    reconcile the wrong hours without anyone noticing.
    """
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        if not naive_utc:
            raise ValueError(f"{text!r} has no time zone (add Z for UTC, or an offset such as +07:00)")
        moment = moment.replace(tzinfo=timezone.utc)
    # The year first: converting year 1 or 9999 to UTC can itself overflow (offsets stay under a day).
    if not EARLIEST.year <= moment.year <= LATEST.year or not EARLIEST <= moment < LATEST:
        raise ValueError(f"{text[:50]!r} is outside the years {EARLIEST.year} to {LATEST.year - 1}")
    return moment


def millis(moment: datetime) -> datetime:
    """Engines keep milliseconds: both sides of a range compare at that precision."""
    moment = moment.astimezone(timezone.utc)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class RunScope:
    """One run's mode and bounds: `upper` for incremental and full, [start, end) for range."""

    mode: str
    upper: datetime
    start: datetime | None = None
    end: datetime | None = None
    floor: datetime | None = None  # the retention horizon: older events are outside every scope

    @classmethod
    def build(
        cls, settings: Settings, mode: str, start: datetime | None, end: datetime | None, now: datetime | None = None
    ) -> "RunScope":
        """The scope of a run asked for now; raise ValueError for bad arguments."""
        check_run(mode, start, end)
        now = now or datetime.now(timezone.utc)
        upper = millis(now - timedelta(seconds=settings.settle_seconds))
        floor = horizon(settings, now)
        floor = millis(floor) if floor is not None else None
        if mode == RANGE:
            assert start is not None and end is not None
            start, end = millis(start), millis(end)
            if floor is not None:  # a range before the horizon reads and answers for nothing
                start = max(start, floor)
                end = max(end, start)
            return cls(mode, upper, start, end, floor)
        return cls(mode, upper, floor=floor)

    @property
    def reconciles(self) -> bool:
        """Full and range runs read a whole scope, so they can tell what is gone."""
        return self.mode in (FULL, RANGE)

    @property
    def moves_cursor(self) -> bool:
        """A range run re-reads history: it never moves the stored cursor."""
        return self.mode != RANGE

    def overlap(self, stored: datetime | None, overlap_seconds: int) -> tuple[datetime, datetime] | None:
        """The [start, end) an incremental run re-reads below the stored cursor (its overlap), if any."""
        if self.mode != INCREMENTAL or stored is None or overlap_seconds <= 0:
            return None
        start = stored - timedelta(seconds=overlap_seconds)
        if self.floor is not None:
            start = max(start, self.floor)
        return start, stored + timedelta(milliseconds=1)

    def query(
        self,
        cursor_field: str,
        stored: datetime | None,
        overlap_seconds: int,
        changed: Sequence[tuple[datetime, datetime]] | None = None,
    ) -> Json:
        """The engine filter of this run; `changed`, when given, is all of the overlap that needs reading."""
        if self.mode == RANGE:
            assert self.start is not None and self.end is not None
            return {"range": {cursor_field: {"gte": engine_time(self.start), "lt": engine_time(self.end)}}}
        window: Json = {"lte": engine_time(self.upper)}
        lower = stored - timedelta(seconds=overlap_seconds) if self.mode == INCREMENTAL and stored is not None else None
        if self.floor is not None:
            lower = max(lower, self.floor) if lower is not None else self.floor
        ranges: list[Json] = []
        if changed is not None and stored is not None:
            # Above the stored cursor everything is read; below it, only the buckets the fingerprints
            # found changed (fingerprints.py).
            window["gt"] = engine_time(stored)
            ranges = [
                {"range": {cursor_field: {"gte": engine_time(start), "lt": engine_time(end)}}} for start, end in changed
            ]
        elif lower is not None:
            window["gte"] = engine_time(lower)
        # Documents without the cursor field are read too, so they are set aside visibly
        # (or kept, once they convert) instead of being skipped in silence.
        return {
            "bool": {
                "should": [
                    {"range": {cursor_field: window}},
                    *ranges,
                    {"bool": {"must_not": [{"exists": {"field": cursor_field}}]}},
                ],
                "minimum_should_match": 1,
            }
        }

    def rows(self, target: sa.Table) -> sa.ColumnElement[bool]:
        """The target rows this run answers for: the same events its query reads."""
        stamp = target.c.event_timestamp
        if self.mode == RANGE:
            return sa.and_(stamp >= self.start, stamp < self.end)
        if self.floor is not None:
            return sa.or_(sa.and_(stamp >= self.floor, stamp <= self.upper), stamp.is_(None))
        return sa.or_(stamp <= self.upper, stamp.is_(None))

    def read_plan(
        self, settings: Settings, stored: datetime | None, changed: Sequence[tuple[datetime, datetime]] | None = None
    ) -> ReadPlan:
        """The reader's plan for this scope (`changed`: as for `query`)."""
        query = filtered(settings.query, self.query(settings.cursor_field, stored, settings.overlap_seconds, changed))
        return ReadPlan(
            settings.es_index,
            query,
            settings.cursor_field,
            settings.batch_size,
            settings.pit_keep_alive,
            source_selection(settings),
        )

"""Prometheus metrics of one app: its own CollectorRegistry, kept in `app.extensions`, no global state.

    counters, histograms   updated in this process: every counted run (a result
                           listener of the scheduler), every page (an observer
                           of the SyncService), every webhook delivery
    state gauges           read from PostgreSQL at scrape time through the
                           scheduler's StateCache (a few seconds), so a process
                           that has just started reports the truth
    process, python        prometheus_client's own collectors, on this registry

Others report through `metrics_of(app)`: the webhook sender calls
`metrics_of(app).webhook_delivered(event_type, result)`.

With a pipelines file every series carries a `pipeline` label (one registry, one series per
pipeline); without one the series are exactly those of the single `default` pipeline, unlabelled.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Callable, Iterable, Sequence, cast

from flask import Flask, current_app
from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from config import DEFAULT_PIPELINE
from rtarf_sync.engine.runs.result import SKIPPED, SyncResult
from rtarf_sync.engine.runs.retention import RetentionOutcome

if TYPE_CHECKING:
    from rtarf_sync.service.scheduler import RtarfEventScheduler

EXTENSION_KEY = "rtarf_metrics"
PREFIX = "rtarf_sync_"
# 50 ms (a run with nothing new) to an hour (a first sync of a large index).
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
# A page of 1,000 events reads in tens of milliseconds; a slow engine or a locked table takes seconds.
PAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OUTCOMES = ("inserted", "updated", "unchanged", "failed", "known_bad", "deleted")
RUN_STATUSES = ("success", "partial", "failed", "skipped")
WEBHOOK_RESULTS = ("delivered", "failed", "abandoned")


class SyncMetrics:
    """The registry of one app and the metrics this process updates."""

    def __init__(self, scheduler: RtarfEventScheduler | Sequence[RtarfEventScheduler], labelled: bool = False) -> None:
        schedulers = metrics_schedulers(scheduler)
        self.labelled = labelled
        self.registry = CollectorRegistry(auto_describe=True)
        r, by = self.registry, (("pipeline",) if labelled else ())
        self.runs = Counter(
            PREFIX + "runs",
            "Runs counted by this process, by trigger, mode and outcome.",
            (*by, "trigger", "mode", "status"),
            registry=r,
        )
        self.run_duration = Histogram(
            PREFIX + "run_duration_seconds",
            "Duration of finished runs.",
            (*by, "mode"),
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            PREFIX + "events", "Events handled by runs of this process, by outcome.", (*by, "outcome"), registry=r
        )
        self.page_seconds = Histogram(
            PREFIX + "page_seconds",
            "Time per page: read from the engine, written to PostgreSQL.",
            (*by, "stage"),
            buckets=PAGE_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            PREFIX + "webhook_deliveries",
            "Webhook delivery attempts by event type and result.",
            (*by, "event_type", "result"),
            registry=r,
        )
        self.retention_partitions = Counter(
            PREFIX + "retention_dropped_partitions",
            "Partitions dropped by retention in this process.",
            by,
            registry=r,
        )
        self.retention_rows = Counter(
            PREFIX + "retention_dropped_rows", "Rows of the partitions dropped by retention.", by, registry=r
        )
        r.register(SyncStateCollector(schedulers, labelled))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        for each in schedulers:
            self._zero_series(self._label(each.settings.pipeline))

    def _label(self, pipeline: str) -> tuple[str, ...]:
        return (pipeline,) if self.labelled else ()

    def _zero_series(self, by: tuple[str, ...]) -> None:
        """Series that exist from the first scrape, so rate() and increase() see their start."""
        for trigger in ("scheduled", "manual"):
            for status in RUN_STATUSES:
                self.runs.labels(*by, trigger, "incremental", status)
        self.run_duration.labels(*by, "incremental")
        for outcome in OUTCOMES:
            self.events.labels(*by, outcome)
        for stage in ("read", "write"):
            self.page_seconds.labels(*by, stage)
        if by:  # unlabelled counters exist from the start by themselves
            self.retention_partitions.labels(*by)
            self.retention_rows.labels(*by)

    def observe_run(self, result: SyncResult, pipeline: str = DEFAULT_PIPELINE) -> None:
        """Count one finished run of `pipeline` (a scheduler result listener)."""
        by = self._label(pipeline)
        self.runs.labels(*by, result.trigger, result.mode, result.status).inc()
        if result.status == SKIPPED:
            return  # it never started: no duration, no events
        self.run_duration.labels(*by, result.mode).observe(result.duration_seconds)
        for outcome in OUTCOMES:
            count = getattr(result, outcome)
            if count:
                self.events.labels(*by, outcome).inc(count)

    def observe_page(self, stage: str, seconds: float, pipeline: str = DEFAULT_PIPELINE) -> None:
        """Time one page stage of `pipeline` (a SyncService page observer)."""
        self.page_seconds.labels(*self._label(pipeline), stage).observe(seconds)

    def observe_retention(self, outcome: RetentionOutcome, pipeline: str = DEFAULT_PIPELINE) -> None:
        """Count the partitions and rows one retention pass of `pipeline` dropped (a retention listener)."""
        by = self._label(pipeline)
        partitions = self.retention_partitions.labels(*by) if by else self.retention_partitions
        rows = self.retention_rows.labels(*by) if by else self.retention_rows
        partitions.inc(len(outcome.dropped))
        rows.inc(sum(int(part["rows"]) for part in outcome.dropped))

    def webhook_delivered(self, event_type: str, result: str, pipeline: str = DEFAULT_PIPELINE) -> None:
        """Count one webhook delivery outcome: result is delivered, failed (will retry) or abandoned."""
        if result not in WEBHOOK_RESULTS:
            raise ValueError(f"webhook result {result!r} is not one of {', '.join(WEBHOOK_RESULTS)}")
        self.webhooks.labels(*self._label(pipeline), event_type, result).inc()

    def watch(self, scheduler: RtarfEventScheduler) -> Callable[[str, str], None]:
        """Hook these metrics to one pipeline's runs and pages; returns its webhook delivery listener."""
        name = scheduler.settings.pipeline
        scheduler.add_result_listener(lambda result: self.observe_run(result, name))
        scheduler.add_page_observer(lambda stage, seconds: self.observe_page(stage, seconds, name))
        return lambda event_type, result: self.webhook_delivered(event_type, result, name)


def _gauge(
    name: str, documentation: str, values: list[tuple[list[str], float | None]], labelled: bool
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=["pipeline"] if labelled else None)
    for labels, value in values:
        if value is not None:
            family.add_metric(labels, value)
    return family


class SyncStateCollector(Collector):
    """Gauges of the lasting state (PostgreSQL, cached) and of this process's scheduler.

    A gauge whose value is unknown (no success yet, no cursor, no verification,
    database unreachable) has no sample: alert on absent(), not on a made-up 0.
    """

    def __init__(self, schedulers: Sequence[RtarfEventScheduler], labelled: bool = False) -> None:
        self.schedulers, self.labelled = list(schedulers), labelled

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so registering reads nothing."""
        return self._families(with_values=False)

    def collect(self) -> Iterable[Metric]:
        """Current values; PostgreSQL is read at most once per cache period."""
        return self._families(with_values=True)

    def _families(self, with_values: bool) -> list[Metric]:
        """One family per gauge, one sample per pipeline (labelled) or the one pipeline's (unlabelled)."""
        per_pipeline = [self._values(scheduler, with_values) for scheduler in self.schedulers]
        families = []
        for position, (name, documentation, _) in enumerate(per_pipeline[0]):
            values = [
                ([scheduler.settings.pipeline] if self.labelled else [], rows[position][2])
                for scheduler, rows in zip(self.schedulers, per_pipeline, strict=True)
            ]
            families.append(_gauge(name, documentation, values, self.labelled))
        return list(families)

    def _values(self, scheduler: RtarfEventScheduler, with_values: bool) -> list[tuple[str, str, float | None]]:
        local = with_values
        stored = scheduler.stored_state.get() if with_values else None

        def at(moment: datetime | None) -> float | None:
            return moment.timestamp() if stored is not None and moment is not None else None

        def of(value: int | None) -> float | None:
            return float(value) if stored is not None and value is not None else None

        s = stored
        return [
            (
                "last_success_timestamp_seconds",
                "When the last successful (or partial) run finished.",
                at(s.last_success_at) if s else None,
            ),
            (
                "last_run_timestamp_seconds",
                "When the last run finished, whatever its outcome.",
                at(s.last_run_at) if s else None,
            ),
            ("cursor_timestamp_seconds", "The stored cursor; lag = time() - this.", at(s.cursor) if s else None),
            (
                "dead_letters_unresolved",
                "Documents set aside and not yet resolved.",
                of(s.dead_letters_unresolved) if s else None,
            ),
            (
                "scheduler_running",
                "1 while the interval job is active in this process.",
                float(scheduler.state() == "running") if local else None,
            ),
            (
                "in_progress",
                "1 while a run holds this process's run lock.",
                float(scheduler.in_progress) if local else None,
            ),
            (
                "lease_held",
                "1 while any process holds the sync lease of this target.",
                of(s.lease_held) if s else None,
            ),
            (
                "verify_source_documents",
                "Engine documents counted by the last verification.",
                of(s.verify_source_documents) if s else None,
            ),
            (
                "verify_target_rows",
                "Live PostgreSQL rows counted by the last verification.",
                of(s.verify_target_rows) if s else None,
            ),
            (
                "verify_buckets_differing",
                "Time buckets whose counts differed at the last verification.",
                of(s.verify_buckets_differing) if s else None,
            ),
            ("verify_timestamp_seconds", "When the last verification ran.", at(s.verified_at) if s else None),
        ]


def init_app(
    app: Flask, scheduler: RtarfEventScheduler | Sequence[RtarfEventScheduler], labelled: bool = False
) -> SyncMetrics:
    """Build the metrics of `app`; `watch` hooks them to each pipeline's scheduler and sync service."""
    metrics = SyncMetrics(scheduler, labelled)
    app.extensions[EXTENSION_KEY] = metrics
    return metrics


def metrics_schedulers(scheduler: RtarfEventScheduler | Sequence[RtarfEventScheduler]) -> list[RtarfEventScheduler]:
    """One scheduler or several, as a list."""
    return [scheduler] if not isinstance(scheduler, Sequence) else list(scheduler)


def metrics_of(app: Flask | None = None) -> SyncMetrics:
    """The metrics of `app`, or of the app serving the current request."""
    target = app if app is not None else current_app
    return cast(SyncMetrics, target.extensions[EXTENSION_KEY])

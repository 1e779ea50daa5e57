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
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Iterable, cast

from flask import Flask, current_app
from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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

    def __init__(self, scheduler: RtarfEventScheduler) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.runs = Counter(
            PREFIX + "runs",
            "Runs counted by this process, by trigger, mode and outcome.",
            ("trigger", "mode", "status"),
            registry=r,
        )
        self.run_duration = Histogram(
            PREFIX + "run_duration_seconds", "Duration of finished runs.", ("mode",), buckets=RUN_BUCKETS, registry=r
        )
        self.events = Counter(
            PREFIX + "events", "Events handled by runs of this process, by outcome.", ("outcome",), registry=r
        )
        self.page_seconds = Histogram(
            PREFIX + "page_seconds",
            "Time per page: read from the engine, written to PostgreSQL.",
            ("stage",),
            buckets=PAGE_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            PREFIX + "webhook_deliveries",
            "Webhook delivery attempts by event type and result.",
            ("event_type", "result"),
            registry=r,
        )
        self.retention_partitions = Counter(
            PREFIX + "retention_dropped_partitions", "Partitions dropped by retention in this process.", registry=r
        )
        self.retention_rows = Counter(
            PREFIX + "retention_dropped_rows", "Rows of the partitions dropped by retention.", registry=r
        )
        r.register(SyncStateCollector(scheduler))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._zero_series()

    def _zero_series(self) -> None:
        """Series that exist from the first scrape, so rate() and increase() see their start."""
        for trigger in ("scheduled", "manual"):
            for status in RUN_STATUSES:
                self.runs.labels(trigger, "incremental", status)
        self.run_duration.labels("incremental")
        for outcome in OUTCOMES:
            self.events.labels(outcome)
        for stage in ("read", "write"):
            self.page_seconds.labels(stage)

    def observe_run(self, result: SyncResult) -> None:
        """Count one finished run (a scheduler result listener)."""
        self.runs.labels(result.trigger, result.mode, result.status).inc()
        if result.status == SKIPPED:
            return  # it never started: no duration, no events
        self.run_duration.labels(result.mode).observe(result.duration_seconds)
        for outcome in OUTCOMES:
            count = getattr(result, outcome)
            if count:
                self.events.labels(outcome).inc(count)

    def observe_retention(self, outcome: RetentionOutcome) -> None:
        """Count the partitions and rows one retention pass dropped (a retention listener)."""
        self.retention_partitions.inc(len(outcome.dropped))
        self.retention_rows.inc(sum(int(part["rows"]) for part in outcome.dropped))

    def observe_page(self, stage: str, seconds: float) -> None:
        """Time one page stage (a SyncService page observer)."""
        self.page_seconds.labels(stage).observe(seconds)

    def webhook_delivered(self, event_type: str, result: str) -> None:
        """Count one webhook delivery outcome: result is delivered, failed (will retry) or abandoned."""
        if result not in WEBHOOK_RESULTS:
            raise ValueError(f"webhook result {result!r} is not one of {', '.join(WEBHOOK_RESULTS)}")
        self.webhooks.labels(event_type, result).inc()


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, documentation)
    if value is not None:
        family.add_metric([], value)
    return family


class SyncStateCollector(Collector):
    """Gauges of the lasting state (PostgreSQL, cached) and of this process's scheduler.

    A gauge whose value is unknown (no success yet, no cursor, no verification,
    database unreachable) has no sample: alert on absent(), not on a made-up 0.
    """

    def __init__(self, scheduler: RtarfEventScheduler) -> None:
        self.scheduler = scheduler

    def describe(self) -> Iterable[Metric]:
        """The families without samples, so registering reads nothing."""
        return self._families(with_values=False)

    def collect(self) -> Iterable[Metric]:
        """Current values; PostgreSQL is read at most once per cache period."""
        return self._families(with_values=True)

    def _families(self, with_values: bool) -> list[Metric]:
        scheduler, local = self.scheduler, with_values
        stored = scheduler.stored_state.get() if with_values else None

        def at(moment: datetime | None) -> float | None:
            return moment.timestamp() if stored is not None and moment is not None else None

        def of(value: int | None) -> float | None:
            return float(value) if stored is not None and value is not None else None

        s = stored
        return [
            _gauge(
                "last_success_timestamp_seconds",
                "When the last successful (or partial) run finished.",
                at(s.last_success_at) if s else None,
            ),
            _gauge(
                "last_run_timestamp_seconds",
                "When the last run finished, whatever its outcome.",
                at(s.last_run_at) if s else None,
            ),
            _gauge("cursor_timestamp_seconds", "The stored cursor; lag = time() - this.", at(s.cursor) if s else None),
            _gauge(
                "dead_letters_unresolved",
                "Documents set aside and not yet resolved.",
                of(s.dead_letters_unresolved) if s else None,
            ),
            _gauge(
                "scheduler_running",
                "1 while the interval job is active in this process.",
                float(scheduler.state() == "running") if local else None,
            ),
            _gauge(
                "in_progress",
                "1 while a run holds this process's run lock.",
                float(scheduler.in_progress) if local else None,
            ),
            _gauge(
                "lease_held",
                "1 while any process holds the sync lease of this target.",
                of(s.lease_held) if s else None,
            ),
            _gauge(
                "verify_source_documents",
                "Engine documents counted by the last verification.",
                of(s.verify_source_documents) if s else None,
            ),
            _gauge(
                "verify_target_rows",
                "Live PostgreSQL rows counted by the last verification.",
                of(s.verify_target_rows) if s else None,
            ),
            _gauge(
                "verify_buckets_differing",
                "Time buckets whose counts differed at the last verification.",
                of(s.verify_buckets_differing) if s else None,
            ),
            _gauge("verify_timestamp_seconds", "When the last verification ran.", at(s.verified_at) if s else None),
        ]


def init_app(app: Flask, scheduler: RtarfEventScheduler) -> SyncMetrics:
    """Build the metrics of `app` and hook them to its scheduler and sync service."""
    metrics = SyncMetrics(scheduler)
    scheduler.add_result_listener(metrics.observe_run)
    scheduler.add_page_observer(metrics.observe_page)
    app.extensions[EXTENSION_KEY] = metrics
    return metrics


def metrics_of(app: Flask | None = None) -> SyncMetrics:
    """The metrics of `app`, or of the app serving the current request."""
    target = app if app is not None else current_app
    return cast(SyncMetrics, target.extensions[EXTENSION_KEY])

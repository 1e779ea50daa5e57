"""The pipelines of one app: per pipeline a scheduler, its verifications, webhooks and trigger.

Every pipeline's jobs live on one shared APScheduler scheduler, each pipeline on an executor of
its own (see RtarfEventScheduler), so a pipeline whose engine hangs never delays another. The
/scheduler routes act on `target` (`default`, or the only pipeline); /pipelines/<name>/... on `name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timezone
from typing import TYPE_CHECKING, Any, Iterator

from apscheduler.schedulers.background import BackgroundScheduler

from config import DEFAULT_PIPELINE
from rtarf_sync.service.state_cache import status_fields

if TYPE_CHECKING:
    from rtarf_sync.notify.notifier import Notifier
    from rtarf_sync.service.scheduler import RtarfEventScheduler
    from rtarf_sync.service.trigger import SyncTrigger
    from rtarf_sync.service.verification import Verifications

# What GET /pipelines and the `pipelines` field of GET /scheduler/status show of each pipeline.
SHORT_STATUS_KEYS = (
    "total_syncs",
    "failed_syncs",
    "last_sync_time",
    "last_sync_status",
    "lag_seconds",
    "dead_letters_unresolved",
)


@dataclass
class Pipeline:
    """One pipeline's parts inside the app."""

    name: str
    scheduler: RtarfEventScheduler
    notifier: Notifier | None = None
    verifications: Verifications | None = None
    trigger: SyncTrigger | None = None

    def short_status(self) -> dict[str, Any]:
        """The few fields that tell at a glance how this pipeline is doing (cheap: stats and the cached state)."""
        scheduler = self.scheduler
        full = {**scheduler.stats.snapshot(), **status_fields(scheduler.stored_state.get())}
        return {
            "name": self.name,
            "table": scheduler.settings.table,
            "source_index": scheduler.settings.es_index,
            "state": scheduler.state(),
            "is_running": scheduler.state() == "running",
            "sync_in_progress": scheduler.in_progress,
            "interval_seconds": scheduler.interval_seconds,
            **{key: full.get(key) for key in SHORT_STATUS_KEYS},
        }


class Pipelines:
    """The app's pipelines by name, in configuration order, and the one APScheduler scheduler they share."""

    def __init__(self, apscheduler: BackgroundScheduler | None = None) -> None:
        self.apscheduler = apscheduler if apscheduler is not None else BackgroundScheduler(timezone=timezone.utc)
        self._by_name: dict[str, Pipeline] = {}

    def add(self, pipeline: Pipeline) -> None:
        """Register one pipeline (create_app does, in configuration order)."""
        self._by_name[pipeline.name] = pipeline

    def __iter__(self) -> Iterator[Pipeline]:
        return iter(list(self._by_name.values()))

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> Pipeline | None:
        """The pipeline called `name`, or None."""
        return self._by_name.get(name)

    @property
    def target(self) -> Pipeline | None:
        """The pipeline the /scheduler routes act on: `default`, else the only one; None when neither."""
        if DEFAULT_PIPELINE in self._by_name:
            return self._by_name[DEFAULT_PIPELINE]
        return next(iter(self._by_name.values())) if len(self._by_name) == 1 else None

    @property
    def primary(self) -> Pipeline:
        """The pipeline the app-wide parts (readiness, the page's details) look at: the target, else the first."""
        return self.target or next(iter(self._by_name.values()))

    def statuses(self) -> dict[str, dict[str, Any]]:
        """Name -> short status of every pipeline."""
        return {pipeline.name: pipeline.short_status() for pipeline in self}

    def shutdown(self) -> None:
        """Stop the shared scheduler once every pipeline has shut its jobs down."""
        if self.apscheduler.running:
            self.apscheduler.shutdown(wait=False)

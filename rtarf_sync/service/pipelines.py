"""The pipelines of one app: per pipeline a scheduler, its verifications, webhooks and trigger.

Every pipeline's jobs live on one shared APScheduler scheduler, each pipeline on an executor of
its own (see RtarfEventScheduler), so a pipeline whose engine hangs never delays another. The
/scheduler routes act on `target` (`default`, or the only pipeline); /pipelines/<name>/... on `name`.

With `sharing` (a pipelines file), processes on the same file and database share the pipelines:
a heartbeat job (`rtarf_pipeline_owners`, every third of the lease TTL) renews this process's
membership and starts the interval jobs of the pipelines it owns, pausing the others
(engine/runs/members.py decides who owns what).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timezone
from typing import TYPE_CHECKING, Any, Iterator

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from config import DEFAULT_PIPELINE
from rtarf_sync.engine.runs.members import assignment, heartbeat, leave, new_member_id
from rtarf_sync.service.state_cache import status_fields

logger = logging.getLogger("rtarf_sync.scheduler")
OWNERS_JOB_ID = "rtarf_pipeline_owners"

if TYPE_CHECKING:
    from rtarf_sync.notify.notifier import Notifier
    from rtarf_sync.service.scheduler import RtarfEventScheduler
    from rtarf_sync.service.trigger import SyncTrigger
    from rtarf_sync.service.retention import Retentions
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
    retentions: Retentions | None = None
    trigger: SyncTrigger | None = None
    owner: str | None = None  # the member that owns it, when pipelines are shared
    held_back: bool = False  # its interval job is paused because another process owns it

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
            "owner": self.owner,
        }


class Pipelines:
    """The app's pipelines by name, in configuration order, and the one APScheduler scheduler they share."""

    def __init__(self, apscheduler: BackgroundScheduler | None = None, *, sharing: bool = False) -> None:
        self.apscheduler = apscheduler if apscheduler is not None else BackgroundScheduler(timezone=timezone.utc)
        self._by_name: dict[str, Pipeline] = {}
        self.sharing = sharing
        self.member = new_member_id()
        self.members: list[str] = []

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

    # -- sharing the pipelines with other processes -----------------------------------

    def start_sharing(self) -> None:
        """Hold every pipeline back, then run the heartbeat now and every third of the lease TTL."""
        ttl = self.primary.scheduler.settings.lease_ttl_seconds
        for pipeline in self:
            pipeline.held_back = True
        if self.apscheduler.get_job(OWNERS_JOB_ID) is not None:
            return
        self.apscheduler.add_executor(ThreadPoolExecutor(max_workers=1), "owners")
        self.apscheduler.add_job(
            self.beat, "interval", id=OWNERS_JOB_ID, seconds=ttl / 3, executor="owners", max_instances=1, coalesce=True
        )
        if not self.apscheduler.running:
            self.apscheduler.start()
        self.beat()

    def beat(self) -> None:
        """Renew this process's membership and start or pause pipelines by who owns them; never raises."""
        service = self.primary.scheduler.service
        try:
            service.ensure_tables()
            members = heartbeat(service.engine, service.tables.lease, self.member, service.settings.lease_ttl_seconds)
        except Exception as error:  # noqa: BLE001 - the next beat tries again; owned pipelines keep running
            logger.warning("Pipeline membership could not be renewed: %s", str(error).splitlines()[0][:300])
            return
        self.rebalance(members)

    def rebalance(self, members: list[str]) -> None:
        """Run the interval jobs of the pipelines this process owns among `members`; pause the others."""
        owners = assignment([pipeline.name for pipeline in self], members)
        if members != self.members:
            mine = sorted(name for name, owner in owners.items() if owner == self.member)
            logger.info(
                "Pipelines shared by %d process(es); this one runs: %s", len(members), ", ".join(mine) or "none"
            )
        self.members = members
        for pipeline in self:
            pipeline.owner = owners[pipeline.name]
            scheduler = pipeline.scheduler
            if pipeline.owner == self.member:
                if pipeline.held_back and not scheduler.stopping:
                    pipeline.held_back = False
                    if scheduler.settings.sync_enabled:
                        scheduler.start()
            elif not pipeline.held_back:
                pipeline.held_back = True
                scheduler.stop()  # a run in progress finishes; the new owner's lease waits for it

    def stop_sharing(self) -> None:
        """Leave the membership, so the other processes take this one's pipelines over at once."""
        if not self.sharing or not self.members:
            return
        if self.apscheduler.get_job(OWNERS_JOB_ID) is not None:
            self.apscheduler.remove_job(OWNERS_JOB_ID)
        self.members = []  # once: atexit may call this again after the app's own shutdown
        service = self.primary.scheduler.service
        try:
            leave(service.engine, service.tables.lease, self.member)
        except Exception as error:  # noqa: BLE001 - the row then expires within the lease TTL
            logger.warning("Could not leave the pipeline membership: %s", str(error).splitlines()[0][:300])

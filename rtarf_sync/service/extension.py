"""The scheduler as a Flask extension: kept in `app.extensions`, started only when asked."""

from __future__ import annotations

import atexit
import logging
from typing import Any, cast

from flask import Flask, current_app, g, has_app_context

from rtarf_sync.service.pipelines import Pipeline, Pipelines
from rtarf_sync.service.scheduler import RtarfEventScheduler

logger = logging.getLogger("rtarf_sync.scheduler")

EXTENSION_KEY = "rtarf_scheduler"
PIPELINES_KEY = "rtarf_pipelines"


def init_app(app: Flask, scheduler: RtarfEventScheduler) -> None:
    """Attach `scheduler` to `app`; nothing starts here."""
    app.extensions[EXTENSION_KEY] = scheduler


def init_pipelines(app: Flask, pipelines: Pipelines) -> None:
    """Attach every pipeline of `app`; the target pipeline's scheduler is also the app's (init_app)."""
    app.extensions[PIPELINES_KEY] = pipelines


def pipelines_of(app: Flask | None = None) -> Pipelines:
    """The pipelines of `app`, or of the app serving the current request."""
    target = app if app is not None else current_app
    return cast(Pipelines, target.extensions[PIPELINES_KEY])


def requested_pipeline() -> Pipeline | None:
    """The pipeline the current request is about (/pipelines/<name>/... or /scheduler/...), if any."""
    return cast("Pipeline | None", g.get("rtarf_pipeline")) if has_app_context() else None


def pipeline_part(attribute: str, key: str, app: Flask | None = None) -> Any:
    """`attribute` of the pipeline the current request is about, else `app.extensions[key]` (its target's)."""
    chosen = requested_pipeline() if app is None else None
    part = getattr(chosen, attribute, None) if chosen is not None else None
    if part is not None:
        return part
    target = app if app is not None else current_app
    return target.extensions[key]


def scheduler_of(app: Flask | None = None) -> RtarfEventScheduler:
    """The scheduler of the pipeline the current request is about, else of `app`'s target pipeline."""
    return cast(RtarfEventScheduler, pipeline_part("scheduler", EXTENSION_KEY, app))


def start(app: Flask) -> bool:
    """Start the interval job of `app` in this process unless RTARF_SYNC_ENABLED is false.

    Call it in the process that serves requests: a gunicorn worker after the
    fork, or the dev server's child under the reloader. Calling it again is harmless.
    """
    from rtarf_sync import notify

    notify.start(app)  # webhooks are delivered whether or not the interval job runs
    pipelines = pipelines_of(app)
    if pipelines.sharing:
        # Processes on one pipelines file share its pipelines: each starts only those it owns.
        pipelines.start_sharing()
        atexit.register(shutdown, app)
        return True
    started = False
    for pipeline in pipelines:
        scheduler = pipeline.scheduler
        if not scheduler.settings.sync_enabled:
            if len(pipelines) == 1 and pipelines.target is pipeline:
                logger.info(
                    "Interval sync is disabled (RTARF_SYNC_ENABLED=false); "
                    "POST /scheduler/start enables it, POST /scheduler/sync-now runs once"
                )
            else:
                logger.info(
                    "Interval sync of pipeline %s is disabled (enabled = false); POST /pipelines/%s/start enables it",
                    pipeline.name,
                    pipeline.name,
                )
            continue
        started = scheduler.start() or started
    if started:
        # Covers the dev server and plain scripts; under gunicorn worker_exit gets there first.
        atexit.register(shutdown, app)
    return started


def shutdown(app: Flask, timeout: float | None = None) -> bool:
    """Stop the scheduler of `app` for good, waiting up to `timeout` seconds for a running sync."""
    from rtarf_sync import notify

    pipelines = pipelines_of(app)
    if timeout is None:
        timeout = pipelines.primary.scheduler.settings.graceful_timeout_seconds * 0.8
    pipelines.stop_sharing()
    for pipeline in pipelines:
        pipeline.scheduler.request_stop()  # every pipeline stops after its page at once, not one by one
    finished = all([pipeline.scheduler.shutdown(timeout) for pipeline in pipelines])
    pipelines.shutdown()
    notify.shutdown(app)  # after the last run, so its notification is stored
    return finished

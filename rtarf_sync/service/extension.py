"""The scheduler as a Flask extension: kept in `app.extensions`, started only when asked."""

from __future__ import annotations

import atexit
import logging
from typing import cast

from flask import Flask, current_app

from rtarf_sync.service.scheduler import RtarfEventScheduler

logger = logging.getLogger("rtarf_sync.scheduler")

EXTENSION_KEY = "rtarf_scheduler"


def init_app(app: Flask, scheduler: RtarfEventScheduler) -> None:
    """Attach `scheduler` to `app`; nothing starts here."""
    app.extensions[EXTENSION_KEY] = scheduler


def scheduler_of(app: Flask | None = None) -> RtarfEventScheduler:
    """The scheduler of `app`, or of the app serving the current request."""
    target = app if app is not None else current_app
    return cast(RtarfEventScheduler, target.extensions[EXTENSION_KEY])


def start(app: Flask) -> bool:
    """Start the interval job of `app` in this process unless RTARF_SYNC_ENABLED is false.

    Call it in the process that serves requests: a gunicorn worker after the
    fork, or the dev server's child under the reloader. Calling it again is harmless.
    """
    from rtarf_sync import notify

    notify.start(app)  # webhooks are delivered whether or not the interval job runs
    scheduler = scheduler_of(app)
    if not scheduler.settings.sync_enabled:
        logger.info(
            "Interval sync is disabled (RTARF_SYNC_ENABLED=false); "
            "POST /scheduler/start enables it, POST /scheduler/sync-now runs once"
        )
        return False
    started = scheduler.start()
    if started:
        # Covers the dev server and plain scripts; under gunicorn worker_exit gets there first.
        atexit.register(scheduler.shutdown, scheduler.settings.graceful_timeout_seconds * 0.8)
    return started


def shutdown(app: Flask, timeout: float | None = None) -> bool:
    """Stop the scheduler of `app` for good, waiting up to `timeout` seconds for a running sync."""
    from rtarf_sync import notify

    scheduler = scheduler_of(app)
    if timeout is None:
        timeout = scheduler.settings.graceful_timeout_seconds * 0.8
    finished = scheduler.shutdown(timeout)
    notify.shutdown(app)  # after the last run, so its notification is stored
    return finished

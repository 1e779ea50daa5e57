"""Signed webhooks (Standard Webhooks) with a durable PostgreSQL outbox.

    notify.init_app(app, scheduler)   # in create_app: builds the Notifier, subscribes it to results
    notify.start(app)                 # after the fork: starts the delivery thread
    notifier_of(app).publish("verify.drift", {"verify": result})
    Outbox(settings, engine_factory).enqueue("verify.drift", {"verify": result})   # synchronous store

Modules: `events` (types and bodies), `endpoints` (masked URLs and keys),
`outbox` (the tables), `delivery` (one signed attempt), `notifier` (the thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rtarf_sync.notify.notifier import Notifier
from rtarf_sync.notify.outbox import Outbox
from rtarf_sync.service.pruning import OutboxPruner

if TYPE_CHECKING:
    from flask import Flask

    from rtarf_sync.service.scheduler import RtarfEventScheduler

__all__ = ["EXTENSION_KEY", "Notifier", "Outbox", "init_app", "notifier_of", "shutdown", "start"]

EXTENSION_KEY = "rtarf_notifier"
ALL_KEY = "rtarf_notifiers"  # one per pipeline


def init_app(app: Flask, scheduler: RtarfEventScheduler, *, primary: bool = True) -> Notifier:
    """Build the notifier on the scheduler's database engine and subscribe it to every counted run.

    Each pipeline has one; the primary one (the /scheduler routes' pipeline) is also the app's."""
    notifier = Notifier(
        scheduler.settings,
        lambda: scheduler.service.engine,
        lambda run_id: scheduler.service.history.get(run_id),
        prepare=lambda: scheduler.service.ensure_tables(),
    )
    scheduler.add_result_listener(notifier.on_result)
    scheduler.add_result_listener(OutboxPruner(notifier.outbox, scheduler.settings.webhooks.retention_days))
    if primary:
        app.extensions[EXTENSION_KEY] = notifier
    app.extensions.setdefault(ALL_KEY, []).append(notifier)
    return notifier


def notifier_of(app: Flask | None = None) -> Notifier:
    """The notifier of the pipeline the current request is about, else of `app`'s target pipeline."""
    from rtarf_sync.service.extension import pipeline_part

    return cast(Notifier, pipeline_part("notifier", EXTENSION_KEY, app))


def start(app: Flask) -> bool:
    """Start delivering in this process (a gunicorn worker after the fork); harmless to repeat."""
    return any([notifier.start() for notifier in app.extensions.get(ALL_KEY, [])])


def shutdown(app: Flask, timeout: float = 5.0) -> None:
    """Stop delivering; anything still queued in memory is stored first."""
    for notifier in app.extensions.get(ALL_KEY, []):
        notifier.close(timeout)

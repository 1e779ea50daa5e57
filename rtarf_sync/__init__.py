"""RTARF Event Sync: keeps a PostgreSQL copy of Elasticsearch or OpenSearch events.

`create_app(settings)` builds the Flask app around one RtarfEventScheduler and
registers its routes; it starts nothing unless `start_scheduler=True`, which
only the process that serves requests (a gunicorn worker after the fork) asks.

Flask and APScheduler are imported inside `create_app`, not here, because every
`import rtarf_sync.<module>` runs this file first and the sync core must stay
free of both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from config import Settings
    from rtarf_sync.service.scheduler import RtarfEventScheduler

__all__ = ["RtarfEventScheduler", "create_app"]


def create_app(
    settings: Settings, *, scheduler: RtarfEventScheduler | None = None, start_scheduler: bool = False
) -> Flask:
    """Build the app from validated settings; start the interval job only if asked and enabled."""
    from flask import Flask

    from rtarf_sync import notify
    from rtarf_sync.api import dead_letters, errors, health, openapi, page, runs, trigger, webhooks
    from rtarf_sync.api.safety import auth, guards
    from rtarf_sync.api import metrics as metrics_routes
    from rtarf_sync.api import scheduler as scheduler_routes
    from rtarf_sync.api import verification as verification_routes
    from rtarf_sync.logs import configure_logging
    from rtarf_sync.service import extension, metrics, retention, verification
    from rtarf_sync.service.scheduler import RtarfEventScheduler

    redactor = configure_logging(settings)
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order
    app.config["RTARF_SETTINGS"] = settings
    extension.init_app(app, scheduler or RtarfEventScheduler(settings=settings))
    sync_scheduler = extension.scheduler_of(app)
    notifier = notify.init_app(app, sync_scheduler)
    verifications = verification.init_app(app, sync_scheduler)
    counters = metrics.init_app(app, sync_scheduler)
    notifier.add_delivery_listener(counters.webhook_delivered)

    def announce_drift(answer: dict[str, Any]) -> None:
        if not answer["in_step"]:
            notifier.publish("verify.drift", {"verify": answer})

    verifications.add_listener(announce_drift)
    retentions = retention.init_app(app, sync_scheduler)
    retentions.add_listener(counters.observe_retention)
    retentions.add_listener(lambda outcome: notifier.publish("retention.dropped", {"retention": outcome.to_dict()}))
    trigger.init_app(app)
    health.init_app(app)
    auth.init_app(app, settings.api_token)
    guards.init_app(app, settings)  # after the token check: a caller without the token learns nothing more
    errors.init_app(app, redactor)
    app.register_blueprint(scheduler_routes.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(verification_routes.bp)
    app.register_blueprint(metrics_routes.bp)
    app.register_blueprint(runs.bp)
    app.register_blueprint(dead_letters.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(trigger.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(openapi.bp)
    if start_scheduler:
        extension.start(app)
    return app


def __getattr__(name: str) -> Any:
    """`from rtarf_sync import RtarfEventScheduler` without importing APScheduler up front."""
    if name == "RtarfEventScheduler":
        from rtarf_sync.service.scheduler import RtarfEventScheduler

        return RtarfEventScheduler
    raise AttributeError(f"module 'rtarf_sync' has no attribute {name!r}")

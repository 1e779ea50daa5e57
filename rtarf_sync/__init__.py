"""RTARF Event Sync: keeps a PostgreSQL copy of Elasticsearch or OpenSearch events.

`create_app(settings)` builds the Flask app around one RtarfEventScheduler and
registers its routes; it starts nothing unless `start_scheduler=True`, which
only the process that serves requests (a gunicorn worker after the fork) asks.

Flask and APScheduler are imported inside `create_app`, not here, because every
`import rtarf_sync.<module>` runs this file first and the sync core must stay
free of both.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    from flask import Flask

    from config import Settings
    from rtarf_sync.engine.runs.retention import RetentionOutcome
    from rtarf_sync.notify.notifier import Notifier
    from rtarf_sync.service.pipelines import Pipelines
    from rtarf_sync.service.scheduler import RtarfEventScheduler

__all__ = ["RtarfEventScheduler", "create_app"]


def create_app(
    settings: Settings,
    *,
    scheduler: RtarfEventScheduler | None = None,
    start_scheduler: bool = False,
    pipelines: Mapping[str, Settings] | None = None,
) -> Flask:
    """Build the app from validated settings; start the interval jobs only if asked and enabled.

    `pipelines` (name -> Settings, from the pipelines file) defaults to the one pipeline `settings`
    describes; `scheduler` (tests) stands for the pipeline the /scheduler routes act on.
    """
    from flask import Flask

    from config import DEFAULT_PIPELINE
    from rtarf_sync.api import errors, health, openapi, page
    from rtarf_sync.api import metrics as metrics_routes
    from rtarf_sync.api import pipelines as pipeline_routes
    from rtarf_sync.api.safety import auth, guards
    from rtarf_sync.logs import configure_logging
    from rtarf_sync.service import extension, metrics
    from rtarf_sync.tracing import setup_tracing

    redactor = configure_logging(settings)
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep the documented field order
    app.config["RTARF_SETTINGS"] = settings
    setup_tracing(app, settings)  # off (nothing installed) unless an OTEL_ variable asks for traces
    configured = dict(pipelines) if pipelines else {settings.pipeline: settings}
    registry = _pipelines(app, configured, scheduler)
    # Without a pipeline other than `default` the series stay exactly as they were before pipelines.
    counters = metrics.init_app(app, [p.scheduler for p in registry], labelled=set(configured) != {DEFAULT_PIPELINE})
    for pipeline in registry:
        assert pipeline.notifier is not None
        pipeline.notifier.add_delivery_listener(counters.watch(pipeline.scheduler))
        if pipeline.retentions is not None:
            pipeline.retentions.add_listener(partial(counters.observe_retention, pipeline=pipeline.name))
    health.init_app(app)
    auth.init_app(app, settings.api_token)
    guards.init_app(app, settings)  # after the token check: a caller without the token learns nothing more
    errors.init_app(app, redactor)
    pipeline_routes.init_app(app)  # the per-pipeline routes, under /scheduler and /pipelines/<name>
    app.register_blueprint(health.bp)
    app.register_blueprint(metrics_routes.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(openapi.bp)
    if start_scheduler:
        extension.start(app)
    return app


def _pipelines(app: Flask, configured: dict[str, Settings], scheduler: RtarfEventScheduler | None) -> Pipelines:
    """Build every pipeline's scheduler (jobs on one shared APScheduler), webhooks, verification and trigger."""
    from config import DEFAULT_PIPELINE
    from rtarf_sync import notify
    from rtarf_sync.api import trigger
    from rtarf_sync.service import extension, retention, verification
    from rtarf_sync.service.pipelines import Pipeline, Pipelines
    from rtarf_sync.service.scheduler import RtarfEventScheduler

    target = DEFAULT_PIPELINE if DEFAULT_PIPELINE in configured else next(iter(configured))
    shared = scheduler.apscheduler if scheduler is not None and len(configured) == 1 else None
    # With a pipeline other than `default` (a pipelines file), processes on that file share the pipelines.
    registry = Pipelines(shared, sharing=set(configured) != {DEFAULT_PIPELINE})
    for name, settings in configured.items():
        primary = name == target
        own = scheduler if primary and scheduler is not None else None
        made = own or RtarfEventScheduler(settings=settings, apscheduler=registry.apscheduler)
        pipeline = Pipeline(name, made)
        pipeline.notifier = notify.init_app(app, made, primary=primary)
        pipeline.verifications = verification.init_app(app, made, primary=primary)
        pipeline.verifications.add_listener(_drift_announcer(pipeline.notifier))
        pipeline.retentions = retention.init_app(app, made, primary=primary)
        pipeline.retentions.add_listener(_drop_announcer(pipeline.notifier))
        pipeline.trigger = trigger.init_app(app, made, primary=primary)
        registry.add(pipeline)
    for pipeline in registry:
        pipeline.scheduler.add_status_provider(lambda: {"pipelines": registry.statuses()})
    extension.init_pipelines(app, registry)
    extension.init_app(app, registry.primary.scheduler)
    return registry


def _drift_announcer(notifier: Notifier) -> Callable[[dict[str, Any]], None]:
    def announce_drift(answer: dict[str, Any]) -> None:
        if not answer["in_step"]:
            notifier.publish("verify.drift", {"verify": answer})

    return announce_drift


def _drop_announcer(notifier: Notifier) -> Callable[[RetentionOutcome], None]:
    def announce_drop(outcome: RetentionOutcome) -> None:
        notifier.publish("retention.dropped", {"retention": outcome.to_dict()})

    return announce_drop


def __getattr__(name: str) -> Any:
    """`from rtarf_sync import RtarfEventScheduler` without importing APScheduler up front."""
    if name == "RtarfEventScheduler":
        from rtarf_sync.service.scheduler import RtarfEventScheduler

        return RtarfEventScheduler
    raise AttributeError(f"module 'rtarf_sync' has no attribute {name!r}")

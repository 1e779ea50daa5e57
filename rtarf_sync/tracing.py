"""OpenTelemetry traces: the SDK installed only when OTEL_ variables ask for it, and the run's spans.

Off by default: then no provider is installed and every span below is the API's no-op. The engine
uses only `tracer` and `traced_pages` from here (the API); the SDK and instrumentations load on demand.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Iterator, TypeVar

from opentelemetry import trace

if TYPE_CHECKING:
    from flask import Flask
    from opentelemetry.sdk.trace.export import SpanExporter

    from config import Settings
    from rtarf_sync.engine.runs.result import SyncResult as RunResult

T = TypeVar("T")
RUN_COUNTS = ("inserted", "updated", "unchanged", "failed", "deleted", "pages")
tracer = trace.get_tracer("rtarf_sync")
_installed = threading.Lock()


def setup_tracing(app: Flask, settings: Settings) -> bool:
    """Trace `app`'s requests, with the runs, PostgreSQL and engine calls beneath; False (nothing done) when off."""
    if not install_tracing(settings):
        return False
    from opentelemetry.instrumentation.flask import FlaskInstrumentor

    FlaskInstrumentor().instrument_app(app)  # type: ignore[no-untyped-call]
    return True


def install_tracing(settings: Settings, exporter: SpanExporter | None = None) -> bool:
    """Install the SDK provider and instrument PostgreSQL and the engine clients, once; False when off.

    `exporter` replaces the ones OTEL_TRACES_EXPORTER names (tests export to memory, span by span)."""
    if not settings.tracing_enabled:
        return False
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
    from opentelemetry.sdk.trace import TracerProvider

    with _installed:
        if not isinstance(trace.get_tracer_provider(), TracerProvider):  # one provider per process
            trace.set_tracer_provider(_provider(settings, exporter))
            # Global patches: engines and clients built from now on are traced.
            SQLAlchemyInstrumentor().instrument()
            URLLib3Instrumentor().instrument()
    return True


def _provider(settings: Settings, exporter: SpanExporter | None) -> Any:
    """A provider whose resource, sampler and exporter settings the SDK reads from OTEL_ variables."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider()
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        for configured in _configured_exporters(settings.trace_exporters):
            provider.add_span_processor(BatchSpanProcessor(configured))
    return provider


def _configured_exporters(names: tuple[str, ...]) -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names: otlp (the default) is OTLP over HTTP, or console."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    # OTLPSpanExporter reads its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_* itself.
    kinds = dict.fromkeys("console" if name == "console" else "otlp" for name in names)
    return [ConsoleSpanExporter() if kind == "console" else OTLPSpanExporter() for kind in kinds]


def describe_run(span: trace.Span, result: RunResult, pipeline: str) -> None:
    """Put a finished run's pipeline, mode, trigger, id, counts and status on its span."""
    span.set_attributes(
        {
            "rtarf.pipeline": pipeline,
            "rtarf.mode": result.mode,
            "rtarf.trigger": result.trigger,
            "rtarf.status": result.status,
            **{f"rtarf.{name}": getattr(result, name) for name in RUN_COUNTS},
        }
    )
    if result.run_id is not None:
        span.set_attribute("rtarf.run_id", result.run_id)
    if result.status == "failed":
        span.set_status(trace.StatusCode.ERROR, result.error)  # already scrubbed of secrets


def traced_pages(pages: Iterator[T]) -> Iterator[tuple[T, trace.Span]]:
    """Each page with its open `rtarf.page` span, whose `rtarf.page.read` child covers reading it.

    The page span is begun only once a page came (its start is the read's), so the final read that
    finds no more pages leaves no empty page behind; the caller writes the page beneath it and ends it."""
    try:
        while True:
            began = time.time_ns()
            try:
                page = next(pages)
            except StopIteration:
                return
            page_span = tracer.start_span("rtarf.page", start_time=began)
            read = tracer.start_span("rtarf.page.read", context=trace.set_span_in_context(page_span), start_time=began)
            read.end()
            yield page, page_span
    finally:
        # Closing these pages closes the reader's: its point in time or scroll is released at once.
        close = getattr(pages, "close", None)
        if close is not None:
            close()

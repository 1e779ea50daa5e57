"""OpenTelemetry traces of one real run on OpenSearch and PostgreSQL, exported to memory; off by default.

The tree: the HTTP request's server span, the run beneath it, its pages (each with a read and a
write), and the SQLAlchemy and urllib3 spans of PostgreSQL and the engine beneath the run.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from typing import Any, Callable, Iterator, cast

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from config import ConfigError, Settings
from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from rtarf_sync.tracing import install_tracing, traced_pages, tracer
from tests.infra.harness.http import EngineHttp
from tests.infra.support import load_sample, offline_settings

EVENTS = 25
BATCH = 10  # three pages


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """The process's provider, exporting span by span to memory; uninstrumented afterwards."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    memory = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    installed_here = not isinstance(provider, TracerProvider)
    if installed_here:
        assert install_tracing(offline_settings(OTEL_TRACES_EXPORTER="console"), memory)
    else:  # installed earlier in this process: listen to it too
        provider.add_span_processor(SimpleSpanProcessor(memory))
        SQLAlchemyInstrumentor().instrument()
        URLLib3Instrumentor().instrument()
    yield memory
    memory.shutdown()  # later tests' spans are dropped
    SQLAlchemyInstrumentor().uninstrument()
    URLLib3Instrumentor().uninstrument()
    if installed_here:
        _forget_the_provider()


def _forget_the_provider() -> None:
    """Put back the API's no-op state, so later tests in this process trace nothing, as without OTEL_.

    The API lets a process set its provider once and has no public reset (its own tests reset the
    same globals); our module's proxy tracer also keeps the real tracer it resolved."""
    cast(Any, trace.get_tracer_provider()).shutdown()
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    cast(Any, tracer)._real_tracer = None


def _children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [span for span in spans if span.parent is not None and span.parent.span_id == parent.context.span_id]


def _beneath(spans: list[ReadableSpan], root: ReadableSpan) -> list[ReadableSpan]:
    """Every descendant of `root`."""
    found, frontier = [], [root]
    while frontier:
        below = _children(spans, frontier.pop())
        found.extend(below)
        frontier.extend(below)
    return found


def test_one_run_over_the_api_is_traced_from_the_request_down(
    opensearch: EngineHttp,
    index_name: str,
    make_settings: Callable[..., Settings],
    exporter: InMemorySpanExporter,
) -> None:
    load_sample(opensearch, index_name, EVENTS)
    settings = make_settings(opensearch, index_name, RTARF_SYNC_BATCH_SIZE=BATCH, OTEL_TRACES_EXPORTER="console")
    settings = replace(settings, pipeline="alerts")  # the span names the run's own pipeline
    app = create_app(settings)
    try:
        exporter.clear()
        response = app.test_client().post("/scheduler/sync-now")
        assert response.status_code == 200, response.get_json()
    finally:
        scheduler_of(app).shutdown(timeout=20)
    spans = list(exporter.get_finished_spans())

    (run,) = [span for span in spans if span.name == "rtarf.run"]
    attributes: dict[str, Any] = dict(run.attributes or {})
    assert attributes["rtarf.pipeline"] == "alerts"
    assert (attributes["rtarf.mode"], attributes["rtarf.trigger"], attributes["rtarf.status"]) == (
        "incremental",
        "manual",
        "success",
    )
    assert isinstance(attributes["rtarf.run_id"], int)
    assert [attributes[f"rtarf.{name}"] for name in ("inserted", "updated", "unchanged", "failed", "deleted")] == [
        EVENTS,
        0,
        0,
        0,
        0,
    ]

    (server,) = [span for span in spans if span.kind == trace.SpanKind.SERVER]
    assert run.parent is not None and run.parent.span_id == server.context.span_id
    assert run.context.trace_id == server.context.trace_id

    pages = [span for span in _children(spans, run) if span.name == "rtarf.page"]
    assert len(pages) >= 2
    for page in pages:
        assert sorted(span.name for span in _children(spans, page) if span.name.startswith("rtarf.page.")) == [
            "rtarf.page.read",
            "rtarf.page.write",
        ]
    below = _beneath(spans, run)
    database = [span for span in below if (span.attributes or {}).get("db.system") == "postgresql"]
    engine_http = [
        span
        for span in below
        if span.kind == trace.SpanKind.CLIENT and {"http.method", "http.request.method"} & set(span.attributes or {})
    ]
    assert database and engine_http
    writes = [span for page in pages for span in _children(spans, page) if span.name == "rtarf.page.write"]
    assert all(any(span.name != "rtarf.page.write" for span in _beneath(spans, write)) for write in writes)


def test_without_otel_variables_no_provider_is_installed() -> None:
    # A fresh interpreter: this process may hold the provider the test above installed.
    probe = """
import sys
from opentelemetry import trace
from rtarf_sync import create_app
from rtarf_sync.service.extension import scheduler_of
from tests.infra.support import offline_settings
app = create_app(offline_settings())
scheduler_of(app).shutdown(timeout=5)
print(type(trace.get_tracer_provider()).__name__, "opentelemetry.sdk.trace" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["ProxyTracerProvider", "False"]


def test_the_otel_variables_switch_traces_on_and_off() -> None:
    assert not offline_settings().tracing_enabled
    assert offline_settings(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318").trace_exporters == ("otlp",)
    assert offline_settings(OTEL_TRACES_EXPORTER="console").trace_exporters == ("console",)
    assert not offline_settings(
        OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://x:4318"
    ).tracing_enabled
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER"):
        offline_settings(OTEL_TRACES_EXPORTER="zipkin")


def test_closing_the_traced_pages_closes_the_reader_beneath_them() -> None:
    closed: list[bool] = []

    def pages() -> Iterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)  # the reader's point in time is released here

    reader = pages()  # still referenced: only an explicit close releases it
    traced = traced_pages(reader)
    next(traced)
    traced.close()
    assert closed == [True]

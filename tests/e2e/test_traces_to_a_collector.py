"""Traces under real gunicorn, exported the way docs/tracing.md shows: OTLP over HTTP to a collector.

The collector here is a small OTLP/HTTP receiver that decodes what the service's own exporter
sends (protobuf on /v1/traces); only the OTEL_ variables of the documented example turn it on.
"""

from __future__ import annotations

import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.support import load_sample, service_env, wait_for

pytestmark = pytest.mark.e2e

EVENTS = 25
SPAN_KIND_CLIENT = 3  # OTLP's Span.SpanKind.SPAN_KIND_CLIENT


class OtlpReceiver:
    """Accepts OTLP/HTTP trace exports on 127.0.0.1 and keeps every span with its service name."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                receiver.take(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass  # quiet: the test reads what it received

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The value of OTEL_EXPORTER_OTLP_ENDPOINT."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, path: str, body: bytes) -> None:
        """Decode one export request."""
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {item.key: item.value.string_value for item in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "service": resource.get("service.name"),
                            "name": span.name,
                            "kind": span.kind,
                            "trace": span.trace_id,
                            "id": span.span_id,
                            "parent": span.parent_span_id,
                            "attributes": {item.key: item.value for item in span.attributes},
                        }
                    )
        self.paths.append(path)

    def named(self, name: str) -> list[dict[str, Any]]:
        """The spans received with this name."""
        return [span for span in list(self.spans) if span["name"] == name]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    """A collector for the test's duration."""
    collector = OtlpReceiver()
    collector.thread.start()
    yield collector
    collector.server.shutdown()
    collector.server.server_close()


def test_a_manual_run_reaches_the_collector_beneath_its_request(
    tmp_path: Path,
    opensearch: EngineHttp,
    index_name: str,
    table_name: str,
    database_url: str,
    receiver: OtlpReceiver,
) -> None:
    load_sample(opensearch, index_name, EVENTS)
    env = service_env(
        database_url,
        opensearch,
        index_name,
        table_name,
        **{
            "RTARF_SYNC_BATCH_SIZE": "10",
            # The documented example's two variables; the short batch delay only makes the test quicker.
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "rtarf-event-sync",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        },
    )
    server = GunicornProcess(tmp_path, env)
    try:
        server.start()
        # The first scheduled run starts with the worker; the manual one follows it.
        wait_for(lambda: server.get("/scheduler/status").json()["total_syncs"] == 1, timeout=90, what="the first run")
        answer = server.post("/scheduler/sync-now", json={"mode": "full"})  # reads every event again
        assert answer.status_code == 200, answer.text

        def manual_run() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
            """The manual run's span with the spans that claim to be its parent, once the parent came too.

            The request's span ends after the run's (its response is written last), so it may come in a
            later export; the server is killed without a flush once this answers."""
            runs = [
                run
                for run in receiver.named("rtarf.run")
                if run["attributes"]["rtarf.trigger"].string_value == "manual"
            ]
            found = [(run, [span for span in list(receiver.spans) if span["id"] == run["parent"]]) for run in runs]
            return [(run, parents) for run, parents in found if parents]

        ((run, parents),) = wait_for(
            manual_run,
            timeout=60,
            what=f"the manual run's span and its request's at the collector; log:\n{server.log()}",
        )
    finally:
        server.close()
    assert set(receiver.paths) == {"/v1/traces"}
    assert {span["service"] for span in receiver.spans} == {"rtarf-event-sync"}
    assert run["attributes"]["rtarf.status"].string_value == "success"
    (request,) = parents
    assert request["name"] == "POST /scheduler/sync-now" and request["trace"] == run["trace"]
    pages = [span for span in receiver.named("rtarf.page") if span["parent"] == run["id"]]
    assert pages  # the full run's pages
    for page in pages:
        assert sorted(span["name"] for span in receiver.spans if span["parent"] == page["id"]) == [
            "rtarf.page.read",
            "rtarf.page.write",
        ]
    in_trace = [span for span in receiver.spans if span["trace"] == run["trace"]]
    assert any(span["attributes"].get("db.system") for span in in_trace)  # PostgreSQL, by SQLAlchemy
    engine_calls = [span for span in in_trace if {"http.method", "http.request.method"} & set(span["attributes"])]
    assert any(span["kind"] == SPAN_KIND_CLIENT for span in engine_calls)  # the engine, by urllib3

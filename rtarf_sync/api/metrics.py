"""GET /metrics: the app's own Prometheus registry, in the text format or OpenMetrics if asked."""

from __future__ import annotations

from flask import Blueprint, Response, request
from prometheus_client.exposition import choose_encoder

from rtarf_sync.service.metrics import metrics_of

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Every series of the app's registry; the state gauges come from PostgreSQL, cached a few seconds."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return Response(encoder(metrics_of().registry), content_type=content_type)

"""Fault answers: the protocol server answers like the real node for the faults both produce.

For each fault the real OpenSearch node can produce on its own (an unknown
point in time, a missing index, a malformed query, a sort on a text field, an
unknown route), both engines are asked the same request; the status, the
error types and the shape of the error body must match, and the sync's
classification (retry, abort, reopen) must come out the same.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Callable

import pytest

from config import Settings
from rtarf_sync.engine.source.clients import OpenSearchApi, classify
from tests.infra.harness.http import EngineHttp

Answer = tuple[int, Any]


def _raw(engine: EngineHttp, method: str, path: str, body: Any = None) -> Answer:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{engine.url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


def _closed_pit(engine: EngineHttp, index: str, make_settings: Callable[..., Settings]) -> Answer:
    if engine.kind == "opensearch":
        api = OpenSearchApi(make_settings(engine))
        pit_id = api.open_pit(index, "1m")
        api.close_pit(pit_id)
        api.close()
    else:
        pit_id = _raw(engine, "POST", f"/{index}/_pit?keep_alive=1m")[1]["id"]
        _raw(engine, "DELETE", "/_pit", {"id": pit_id})
    return _raw(
        engine,
        "POST",
        "/_search",
        {"size": 1, "pit": {"id": pit_id, "keep_alive": "1m"}, "sort": [{"@timestamp": "asc"}]},
    )


FAULTS: dict[str, Callable[[EngineHttp, str, Callable[..., Settings]], Answer]] = {
    "unknown point in time": _closed_pit,
    "missing index": lambda engine, index, _: _raw(
        engine, "POST", "/rtarf-events-none-such-4c1/_search", {"query": {"match_all": {}}}
    ),
    "malformed query": lambda engine, index, _: _raw(
        engine, "POST", f"/{index}/_search", {"query": {"no_such_query": {}}}
    ),
    "sort on a text field": lambda engine, index, _: _raw(
        engine, "POST", f"/{index}/_search", {"sort": [{"message": "asc"}]}
    ),
}


def _shape(answer: Answer) -> dict[str, Any]:
    """What must match between engines: statuses, error types, and which keys the body has."""
    status, body = answer
    assert isinstance(body, dict), body
    error = body["error"]
    causes = error.get("root_cause") or []
    return {
        "status": status,
        "body status": body.get("status"),
        "type": error.get("type"),
        "root cause": causes[0].get("type") if causes else None,
        "keys": sorted(key for key in ("error", "status") if key in body),
        "error keys": sorted(key for key in ("root_cause", "type", "reason") if key in error),
        "classified as": type(classify(status, body, "search")).__name__,
    }


@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_protocol_server_answers_faults_like_the_real_node(
    fault: str,
    opensearch: EngineHttp,
    elasticsearch: EngineHttp,
    make_settings: Callable[..., Settings],
    index_name: str,
) -> None:
    shapes = {}
    for engine in (opensearch, elasticsearch):
        engine.create_index(index_name)
        _raw(
            engine,
            "PUT",
            f"/{index_name}/_doc/one?refresh=true",
            {"@timestamp": "2025-11-14T10:00:00Z", "message": "text, not keyword"},
        )
        shapes[engine.kind] = _shape(FAULTS[fault](engine, index_name, make_settings))
    assert shapes["elasticsearch"] == shapes["opensearch"]

"""The harness fails loudly: an engine that cannot start is an error with its own log tail."""

from __future__ import annotations

import glob

import pytest

from tests.infra.harness import EngineStartError, OpenSearchNode, PostgresCluster


def test_postgres_that_cannot_start_reports_its_log_tail() -> None:
    before = set(glob.glob("/tmp/rtarf-pg-*"))
    cluster = PostgresCluster(options={"shared_buffers": "not-a-size"})
    with pytest.raises(EngineStartError) as failure:
        cluster.start()
    assert "PostgreSQL exited" in str(failure.value)
    assert "shared_buffers" in str(failure.value), "the server's own words are in the message"
    assert set(glob.glob("/tmp/rtarf-pg-*")) == before, "nothing is left behind"


def test_opensearch_that_cannot_start_reports_its_log_tail() -> None:
    node = OpenSearchNode(heap_mb=256, settings={"rtarf.no.such.setting": "1"})
    with pytest.raises(EngineStartError) as failure:
        node.start(timeout=120)
    message = str(failure.value)
    assert "OpenSearch exited" in message
    # The runner does not print why a node refused its settings, so the node's own log
    # (its start-up lines, then its shutdown) is what the error carries.
    assert "--- node log ---" in message and "version[2.19" in message
    assert node.process is None and node.root is None

"""Processes on one pipelines file share its pipelines: each pipeline's interval job runs in one of
them, the work spreads, and a process that leaves (or stops renewing, as a killed one does) has its
pipelines taken over within two lease periods.

Two apps in one test process stand for two service processes: each has its own member id,
scheduler and database connections, and they meet only in PostgreSQL.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from config import load_settings
from rtarf_sync import create_app
from rtarf_sync.engine.runs.members import assignment
from rtarf_sync.pipelines_file import load_pipelines
from rtarf_sync.service import extension
from rtarf_sync.service.pipelines import OWNERS_JOB_ID
from tests.infra.harness.http import EngineHttp
from tests.infra.support import load_sample, wait_for

NAMES = ("alerts", "auth", "firewall")
TTL = 5


def test_the_assignment_spreads_pipelines_evenly_and_moves_little() -> None:
    two = assignment(list(NAMES), ["a", "b"])
    assert sorted(list(two.values()).count(member) for member in ("a", "b")) == [1, 2]
    three = assignment(list(NAMES), ["a", "b", "c"])
    assert sorted(three.values()) == ["a", "b", "c"]
    assert set(assignment(list(NAMES), ["a"]).values()) == {"a"}


@pytest.fixture
def environ(tmp_path: Path, database_url: str, opensearch: EngineHttp) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    sections = []
    for name in NAMES:
        load_sample(opensearch, f"rtarf-{name}-{tag}", 3)
        sections.append(f'[pipelines.{name}]\nindex = "rtarf-{name}-{tag}"\ntable = "{name}_{tag}"\n')
    path = tmp_path / "pipelines.toml"
    path.write_text("[defaults]\ninterval_seconds = 3600\nverify_interval_seconds = 0\n" + "\n".join(sections))
    return {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": opensearch.url,
        "RTARF_SOURCE_ENGINE": "opensearch",
        "RTARF_LEASE_TTL_SECONDS": str(TTL),
        "RTARF_PIPELINES_FILE": str(path),
    }


@pytest.fixture
def apps(environ: dict[str, str]) -> Iterator[list[Flask]]:
    made: list[Flask] = []
    for _ in range(2):
        settings = load_settings(environ)
        made.append(create_app(settings, pipelines=load_pipelines(environ, settings), start_scheduler=True))
    yield made
    for app in made:
        extension.shutdown(app, timeout=10)


def _running_where(apps: list[Flask]) -> dict[str, list[int]]:
    """Pipeline -> which apps run its interval job."""
    return {
        name: [n for n, app in enumerate(apps) if extension.pipelines_of(app).get(name).scheduler.state() == "running"]  # type: ignore[union-attr]
        for name in NAMES
    }


def _shared_out(apps: list[Flask]) -> bool:
    where = _running_where(apps)
    return all(len(where[name]) == 1 for name in NAMES) and {n for ns in where.values() for n in ns} == {0, 1}


def test_each_pipeline_runs_in_one_process_and_moves_when_one_leaves(apps: list[Flask], db_engine: sa.Engine) -> None:
    # Both processes see each other within a heartbeat and split the three pipelines 2 + 1.
    wait_for(lambda: _shared_out(apps), timeout=3 * TTL, what="the pipelines to be shared out")
    shown = apps[0].test_client().get("/pipelines").get_json()["pipelines"]
    owners = {pipeline["owner"] for pipeline in shown}
    assert len(owners) == 2 and {extension.pipelines_of(app).member for app in apps} == owners

    # The second process leaves (a graceful stop): the first takes everything over.
    extension.shutdown(apps[1], timeout=10)
    wait_for(lambda: _running_where(apps[:1]) == {name: [0] for name in NAMES}, timeout=2 * TTL, what="takeover")


def test_a_process_that_stops_renewing_has_its_pipelines_taken_over(apps: list[Flask]) -> None:
    wait_for(lambda: _shared_out(apps), timeout=3 * TTL, what="the pipelines to be shared out")
    # As if killed: the second process stops renewing without leaving (its row expires) and runs nothing.
    gone = extension.pipelines_of(apps[1])
    gone.apscheduler.remove_job(OWNERS_JOB_ID)
    for pipeline in gone:
        pipeline.scheduler.stop()
    wait_for(
        lambda: _running_where(apps[:1]) == {name: [0] for name in NAMES},
        timeout=2 * TTL + 2,  # its row expires after one TTL; the next heartbeat (a third of one) notices
        what="takeover of a silent process's pipelines",
    )

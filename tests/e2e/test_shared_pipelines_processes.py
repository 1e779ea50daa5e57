"""Real service processes on one pipelines file share its pipelines, on both engines.

Two gunicorn services start on the same file and database: each pipeline's interval job runs in
exactly one of them and both get work. One is killed with SIGKILL (master and worker at once):
within two lease periods the survivor runs every pipeline, and every event indexed meanwhile
lands exactly once. With three: a third that joins takes one pipeline of its own, and one that
stops (SIGTERM) hands its pipeline to the others, each within two lease periods.
"""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa

from rtarf_sync.sample import make_event
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs
from tests.infra.support import count_rows, wait_for

NAMES = ("alerts", "auth", "firewall")
TTL = 6


def _index(engine: EngineHttp, index: str, first: int, count: int) -> None:
    docs = {f"doc-{n}": dict(make_event(n)) for n in range(first, first + count)}
    assert index_docs(engine, index, docs)["errors"] is False
    engine.refresh(index)


@pytest.fixture
def services(
    tmp_path: Path, engine: EngineHttp, database_url: str
) -> Iterator[tuple[list[GunicornProcess], str, Callable[[], GunicornProcess]]]:
    tag = uuid.uuid4().hex[:8]
    sections = []
    for name in NAMES:
        _index(engine, f"rtarf-{name}-{tag}", 0, 4)
        sections.append(f'[pipelines.{name}]\nindex = "rtarf-{name}-{tag}"\ntable = "{name}_{tag}"\n')
    path = tmp_path / "pipelines.toml"
    path.write_text("[defaults]\ninterval_seconds = 1\nverify_interval_seconds = 0\n" + "\n".join(sections))
    env = {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": engine.url,
        "RTARF_SOURCE_ENGINE": engine.kind,
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_LEASE_TTL_SECONDS": str(TTL),
        "RTARF_PIPELINES_FILE": str(path),
    }
    made: list[GunicornProcess] = []

    def start_one() -> GunicornProcess:
        folder = tmp_path / f"service-{len(made)}"
        folder.mkdir()
        service = GunicornProcess(folder, env)
        made.append(service)
        return service.start()

    try:
        for _ in range(2):
            start_one()
        yield made, tag, start_one
    finally:
        for service in made:
            service.close()


def _each_event_lands_once(db_engine: sa.Engine, tag: str, events: int) -> None:
    """Every pipeline's table reaches `events` rows, one per document."""
    for name in NAMES:
        wait_for(lambda name=name: count_rows(db_engine, f"{name}_{tag}") == events, timeout=30, what=f"{name} rows")
    with db_engine.connect() as connection:
        for name in NAMES:
            ids = connection.execute(sa.text(f'SELECT count(DISTINCT es_id), count(*) FROM "{name}_{tag}"')).one()
            assert tuple(ids) == (events, events)


def _runs_here(service: GunicornProcess) -> set[str]:
    listed = service.get("/pipelines", timeout=10).json()["pipelines"]
    return {pipeline["name"] for pipeline in listed if pipeline["is_running"]}


def test_processes_share_the_pipelines_and_a_killed_ones_move_within_two_lease_periods(
    services: tuple[list[GunicornProcess], str, Callable[[], GunicornProcess]],
    engine: EngineHttp,
    db_engine: sa.Engine,
) -> None:
    (first, second), tag, _ = services

    def shared_out() -> bool:
        one, two = _runs_here(first), _runs_here(second)
        return not one & two and one | two == set(NAMES) and bool(one) and bool(two)

    wait_for(shared_out, timeout=4 * TTL, what="the pipelines to be shared out between the two services")
    for name in NAMES:
        wait_for(lambda name=name: count_rows(db_engine, f"{name}_{tag}") == 4, timeout=30, what=f"{name} rows")

    victims = [second.master_pid, *second.worker_pids()]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for name in NAMES:
        _index(engine, f"rtarf-{name}-{tag}", 4, 6)  # indexed while the second service is gone
    wait_for(lambda: _runs_here(first) == set(NAMES), timeout=2 * TTL + 2, what="the survivor to run everything")
    _each_event_lands_once(db_engine, tag, 10)


def _one_each(services: list[GunicornProcess]) -> bool:
    """Every pipeline runs in exactly one of `services`, and each of them runs exactly one."""
    shares = [_runs_here(service) for service in services]
    return all(len(share) == 1 for share in shares) and set().union(*shares) == set(NAMES)


def test_a_third_process_that_joins_takes_a_pipeline_and_one_that_stops_hands_it_on(
    services: tuple[list[GunicornProcess], str, Callable[[], GunicornProcess]],
    engine: EngineHttp,
    db_engine: sa.Engine,
) -> None:
    (first, second), tag, start_one = services
    third = start_one()
    wait_for(lambda: _one_each([first, second, third]), timeout=2 * TTL + 2, what="one pipeline in each process")

    code, _ = second.terminate(timeout=60)  # leaves cleanly: its membership goes at once
    assert code == 0, second.log()

    def two_cover_all() -> bool:
        one, two = _runs_here(first), _runs_here(third)
        return not one & two and one | two == set(NAMES)

    wait_for(two_cover_all, timeout=2 * TTL + 2, what="the two left to run every pipeline")
    for name in NAMES:
        _index(engine, f"rtarf-{name}-{tag}", 4, 3)
    _each_event_lands_once(db_engine, tag, 7)

"""Stop and start act on every real service process of one database, on both engines.

With a pipelines file, a stop sent to the process that does not run a pipeline stops it in the one
that does: once that one shows `paused`, no run of the pipeline starts anywhere while the other
pipeline (the clock of the test) keeps running; a start sent there resumes it; a process that joins
while it is stopped, and takes it over, keeps it paused. Without a pipelines file, two replicas of
the one pipeline: a stop sent to one stops both.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest
import sqlalchemy as sa

from rtarf_sync.sample import make_event
from tests.infra.gunicorn_process import GunicornProcess
from tests.infra.harness.http import EngineHttp
from tests.infra.oracle import index_docs
from tests.infra.support import wait_for

TTL = 6
ROUNDS = 4  # intervals of the clock pipeline during which the stopped one must not run


def _index(engine: EngineHttp, index: str) -> None:
    docs = {f"doc-{n}": dict(make_event(n)) for n in range(3)}
    assert index_docs(engine, index, docs)["errors"] is False
    engine.refresh(index)


def _runs(db_engine: sa.Engine, table: str) -> int:
    """Runs recorded for `table` (started ones included)."""
    with db_engine.connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT count(*) FROM rtarf_sync_runs WHERE target_table = :table"), {"table": table}
            ).scalar_one()
        )


def _unfinished(db_engine: sa.Engine, table: str) -> int:
    with db_engine.connect() as connection:
        return int(
            connection.execute(
                sa.text("SELECT count(*) FROM rtarf_sync_runs WHERE target_table = :table AND finished_at IS NULL"),
                {"table": table},
            ).scalar_one()
        )


def _status(service: GunicornProcess, prefix: str) -> dict[str, object]:
    answer: dict[str, object] = service.get(f"{prefix}/status", timeout=10).json()
    return answer


def _settled(db_engine: sa.Engine, table: str) -> int:
    """Once no run of `table` is in progress anywhere: how many runs it has."""
    wait_for(lambda: _unfinished(db_engine, table) == 0, timeout=60, what=f"the run of {table} in progress")
    return _runs(db_engine, table)


def _no_run_while(db_engine: sa.Engine, stopped: str, clock: str) -> None:
    """The clock table gets ROUNDS more runs while `stopped` gets none."""
    before = _settled(db_engine, stopped)
    ticks = _runs(db_engine, clock)
    wait_for(lambda: _runs(db_engine, clock) >= ticks + ROUNDS, timeout=60, what=f"{ROUNDS} runs of {clock}")
    assert _runs(db_engine, stopped) == before


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], GunicornProcess]]:
    made: list[GunicornProcess] = []

    def start(env: dict[str, str]) -> GunicornProcess:
        folder = tmp_path / f"service-{len(made)}"
        folder.mkdir()
        service = GunicornProcess(folder, env)
        made.append(service)
        return service.start()

    yield start
    for service in made:
        service.close()


def _base_env(engine: EngineHttp, database_url: str) -> dict[str, str]:
    return {
        "RTARF_DATABASE_URL": database_url,
        "RTARF_ES_URL": engine.url,
        "RTARF_SOURCE_ENGINE": engine.kind,
        "RTARF_SYNC_SETTLE_SECONDS": "0",
        "RTARF_LEASE_TTL_SECONDS": str(TTL),
    }


def test_a_stop_sent_to_one_process_stops_the_pipeline_where_it_runs_and_in_one_that_joins(
    start_service: Callable[[dict[str, str]], GunicornProcess],
    tmp_path: Path,
    engine: EngineHttp,
    database_url: str,
    db_engine: sa.Engine,
) -> None:
    tag = uuid.uuid4().hex[:8]
    sections = []
    for name in ("alerts", "auth"):
        _index(engine, f"rtarf-{name}-{tag}")
        sections.append(f'[pipelines.{name}]\nindex = "rtarf-{name}-{tag}"\ntable = "{name}_{tag}"\n')
    path = tmp_path / "pipelines.toml"
    path.write_text("[defaults]\ninterval_seconds = 1\nverify_interval_seconds = 0\n" + "\n".join(sections))
    env = {**_base_env(engine, database_url), "RTARF_PIPELINES_FILE": str(path)}
    one, two = start_service(env), start_service(env)

    def running(service: GunicornProcess) -> set[str]:
        listed = service.get("/pipelines", timeout=10).json()["pipelines"]
        return {pipeline["name"] for pipeline in listed if pipeline["is_running"]}

    wait_for(lambda: len(running(one)) == 1 and running(one) | running(two) == {"alerts", "auth"}, timeout=4 * TTL)
    # `owner` (the process that runs `alerts`) and `other`, which the stop is sent to.
    owner, other = (one, two) if "alerts" in running(one) else (two, one)
    stopped, clock = f"alerts_{tag}", f"auth_{tag}"
    wait_for(lambda: _runs(db_engine, stopped) > 0, timeout=30, what="a first run of alerts")

    answer = other.post("/pipelines/alerts/stop", timeout=30)
    assert answer.status_code == 200
    assert answer.json()["message"] == "Scheduler stopped"
    assert answer.json()["scheduler_status"]["state"] == "paused"
    wait_for(lambda: _status(owner, "/pipelines/alerts")["state"] == "paused", timeout=2 * TTL, what="the owner")
    assert _status(owner, "/pipelines/alerts")["is_running"] is False
    _no_run_while(db_engine, stopped, clock)

    # A process that joins while alerts is stopped shows it paused, and takes it over paused.
    third = start_service(env)
    wait_for(lambda: _status(third, "/pipelines/alerts")["state"] == "paused", timeout=2 * TTL, what="the third")
    assert owner.terminate(timeout=60)[0] == 0 and other.terminate(timeout=60)[0] == 0

    def third_owns_both() -> bool:
        listed = third.get("/pipelines", timeout=10).json()["pipelines"]
        return len({pipeline["owner"] for pipeline in listed}) == 1 and "auth" in running(third)

    wait_for(third_owns_both, timeout=2 * TTL + 2, what="the third to own both pipelines")
    _no_run_while(db_engine, stopped, clock)
    assert _status(third, "/pipelines/alerts")["state"] == "paused"

    started = third.post("/pipelines/alerts/start", timeout=30)
    assert (started.status_code, started.json()["message"]) == (200, "Scheduler started")
    resumed = _runs(db_engine, stopped)
    wait_for(lambda: _runs(db_engine, stopped) > resumed, timeout=30, what="alerts to run again")


def test_without_a_pipelines_file_a_stop_sent_to_one_replica_stops_both(
    start_service: Callable[[dict[str, str]], GunicornProcess],
    engine: EngineHttp,
    database_url: str,
    db_engine: sa.Engine,
) -> None:
    tag = uuid.uuid4().hex[:8]
    stopped, clock = f"single_{tag}", f"clock_{tag}"
    base = {**_base_env(engine, database_url), "RTARF_SYNC_INTERVAL_SECONDS": "1"}
    for table in (stopped, clock):
        _index(engine, f"rtarf-{table}")
    env = {**base, "RTARF_ES_INDEX": f"rtarf-{stopped}", "RTARF_TABLE": stopped}
    one, two = start_service(env), start_service(env)
    start_service({**base, "RTARF_ES_INDEX": f"rtarf-{clock}", "RTARF_TABLE": clock})  # the test's clock
    assert _status(one, "/scheduler")["state"] == _status(two, "/scheduler")["state"] == "running"
    wait_for(lambda: _runs(db_engine, stopped) > 0, timeout=30, what="a first run")

    answer = one.post("/scheduler/stop", timeout=30)
    assert (answer.status_code, answer.json()["message"]) == (200, "Scheduler stopped")
    wait_for(lambda: _status(two, "/scheduler")["state"] == "paused", timeout=2 * TTL, what="the other replica")
    _no_run_while(db_engine, stopped, clock)

    started = two.post("/scheduler/start", timeout=30)
    assert (started.status_code, started.json()["message"]) == (200, "Scheduler started")
    wait_for(lambda: _status(one, "/scheduler")["state"] == "running", timeout=2 * TTL, what="the first replica")
    resumed = _runs(db_engine, stopped)
    wait_for(lambda: _runs(db_engine, stopped) > resumed, timeout=30, what="runs again")

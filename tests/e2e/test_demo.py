"""The `make demo` driver, bounded: the service under gunicorn keeps new events flowing into PostgreSQL.

The demo starts its own engines when run by hand; here it reuses the test
session's PostgreSQL and OpenSearch (its --database-url and --opensearch-url
options), with a fresh index, table and port, so the test stays short.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from tests.infra.harness.http import EngineHttp
from tests.infra.harness.process import free_port

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.py"


def demo_argv(opensearch: EngineHttp, database_url: str, index: str, table: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(DEMO),
        "--port",
        str(port),
        "--opensearch-url",
        opensearch.url,
        "--database-url",
        database_url,
        "--index",
        index,
        "--table",
        table,
        "--alerts-table",
        f"{table}_alerts",
        "--events",
        "400",
        "--batch",
        "50",
        "--every",
        "2",
        "--interval",
        "2",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("RTARF_")}


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _rows(db_engine: sa.Engine, table: str) -> int:
    with db_engine.connect() as connection:
        return int(connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one())


def test_demo_keeps_syncing_new_events_then_stops_cleanly(
    opensearch: EngineHttp, database_url: str, db_engine: sa.Engine, index_name: str, table_name: str
) -> None:
    port = free_port()
    try:
        shown = subprocess.run(
            demo_argv(opensearch, database_url, index_name, table_name, port, "--duration", "9"),
            capture_output=True,
            text=True,
            timeout=240,
            env=_env(),
            cwd=ROOT,
        )
        assert shown.returncode == 0, shown.stdout + shown.stderr
        out = shown.stdout
        assert "first sync done" in out and '"last_sync_status": "success"' in out
        assert out.count("+50 new events") >= 3  # events kept arriving ...
        assert "Sync completed successfully" in out  # ... and the service kept syncing them
        assert "in step: every one of the" in out
        # The alerts pipeline: its typed columns queried in SQL, its rows exactly the matching events.
        assert "the alerts pipeline's typed columns, queried in SQL:" in out
        assert _rows(db_engine, f"{table_name}_alerts") == _high_severity(opensearch, index_name) > 0
        with db_engine.connect() as connection:
            kinds = connection.execute(
                sa.text(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
                ),
                {"t": f"{table_name}_alerts"},
            ).all()
            leaked = connection.execute(
                sa.text(f"SELECT count(*) FROM \"{table_name}_alerts\" WHERE source ? 'message'")
            ).scalar_one()
        assert {"source_ip": "inet", "severity": "smallint", "tags": "text[]"}.items() <= dict(kinds).items()
        assert leaked == 0  # source_excludes kept the payload out
        assert "service stopped (gunicorn exit status 0)" in out
        assert _rows(db_engine, table_name) == opensearch.count(index_name) >= 550
        assert port_is_free(port)  # gunicorn is gone
    finally:
        opensearch.delete_index(index_name)


def _high_severity(opensearch: EngineHttp, index: str) -> int:
    return int(
        opensearch.call("POST", f"/{index}/_count", {"query": {"range": {"event.severity": {"gte": 7}}}})["count"]
    )


def test_ctrl_c_stops_the_service(opensearch: EngineHttp, database_url: str, index_name: str, table_name: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        demo_argv(opensearch, database_url, index_name, table_name, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_env(),
        cwd=ROOT,
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("new events" in line for line in seen):
            line = process.stdout.readline()
            if not line:
                break
            seen.append(line)
        assert any("new events" in line for line in seen), "".join(seen)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=90)
        assert process.returncode == 0, "".join(seen) + rest
        assert "service stopped" in rest and "[demo] stopped" in rest
        assert port_is_free(port)
    finally:
        if process.poll() is None:
            process.kill()
        opensearch.delete_index(index_name)


def test_busy_port_is_a_clear_error_before_anything_starts() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        shown = subprocess.run(
            [sys.executable, str(DEMO), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env=_env(),
            cwd=ROOT,
        )
    assert shown.returncode == 1
    assert f"port {port} is already in use" in shown.stdout and f"--port {port + 1}" in shown.stdout
    assert "[harness]" not in shown.stdout + shown.stderr  # no engine was started
    assert time.monotonic() - started < 30


def test_demo_help_names_its_options() -> None:
    shown = subprocess.run(
        [sys.executable, str(DEMO), "--help"], capture_output=True, text=True, timeout=60, env=_env(), cwd=ROOT
    )
    assert shown.returncode == 0
    assert "--duration" in shown.stdout and "Ctrl-C" in shown.stdout

"""The pipelines file: every key checked by the rule of its variable, one-line errors naming pipeline and key.

Without RTARF_PIPELINES_FILE there is exactly one pipeline, `default`, equal to the environment's
settings; gunicorn refuses to start on a bad file, like on a bad variable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from config import WEBHOOK_EVENTS, ColumnSpec, ConfigError, load_settings
from rtarf_sync.pipelines_file import load_pipelines

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[defaults]
interval_seconds = 120
verify_interval_seconds = 0

[pipelines.alerts]
index = "rtarf-alerts-*"
table = "rtarf_alerts"
query = { term = { "event.kind" = "alert" } }
source_includes = ["@timestamp", "event.*", "source.*"]
source_excludes = ["user.email"]
delete_mode = "hard"
slices = 4
webhook_events = "*"

[pipelines.alerts.columns]
source_ip = { path = "source.ip", type = "inet" }
severity = { path = "event.severity", type = "smallint", index = true, on_error = "null" }

[pipelines.auth-logs]
index = "rtarf-auth-*"
table = "rtarf_auth"
enabled = false
batch_size = 500
delete_max_fraction = 0.5
webhook_events = ["sync.failed"]
partition = "month"
retention_days = 365
legal_hold = [[2025-01-01, "2025-04-01"]]
"""


def _load(tmp_path: Path, text: str, **environ: str) -> dict[str, object]:
    path = tmp_path / "pipelines.toml"
    path.write_text(text, encoding="utf-8")
    return dict(load_pipelines({"RTARF_PIPELINES_FILE": str(path), **environ}))


def test_without_the_file_the_environment_is_the_one_default_pipeline() -> None:
    environ = {"RTARF_TABLE": "events_here", "RTARF_SYNC_BATCH_SIZE": "77"}
    assert load_pipelines(environ) == {"default": load_settings(environ)}


def test_each_pipeline_is_the_environment_then_defaults_then_its_own_keys(tmp_path: Path) -> None:
    pipelines = _load(tmp_path, GOOD, RTARF_SYNC_SETTLE_SECONDS="9", RTARF_SYNC_INTERVAL_SECONDS="30")
    assert list(pipelines) == ["alerts", "auth-logs"]
    alerts, auth = pipelines["alerts"], pipelines["auth-logs"]
    assert alerts.pipeline == "alerts" and auth.pipeline == "auth-logs"  # type: ignore[attr-defined]
    assert (alerts.es_index, alerts.table, auth.table) == ("rtarf-alerts-*", "rtarf_alerts", "rtarf_auth")  # type: ignore[attr-defined]
    assert alerts.sync_interval_seconds == auth.sync_interval_seconds == 120  # type: ignore[attr-defined]
    assert alerts.settle_seconds == 9 and alerts.verify.interval_seconds == 0  # type: ignore[attr-defined]
    assert alerts.reconcile.delete_mode == "hard" and alerts.reconcile.slices == 4  # type: ignore[attr-defined]
    assert auth.reconcile.delete_mode == "soft" and auth.reconcile.delete_max_fraction == 0.5  # type: ignore[attr-defined]
    assert (auth.sync_enabled, auth.batch_size, auth.webhooks.events) == (False, 500, ("sync.failed",))  # type: ignore[attr-defined]
    assert alerts.webhooks.events == WEBHOOK_EVENTS  # type: ignore[attr-defined]
    assert (alerts.partition, alerts.retention_days, alerts.legal_hold) == (None, None, ())  # type: ignore[attr-defined]
    assert (auth.partition, auth.retention_days) == ("month", 365)  # type: ignore[attr-defined]
    assert auth.legal_hold == ((date(2025, 1, 1), date(2025, 4, 1)),)  # type: ignore[attr-defined]
    assert alerts.query == {"term": {"event.kind": "alert"}}  # type: ignore[attr-defined]
    assert alerts.source_excludes == ("user.email",) and auth.source_includes == ()  # type: ignore[attr-defined]
    assert alerts.columns == (  # type: ignore[attr-defined]
        ColumnSpec("source_ip", "source.ip", "inet"),
        ColumnSpec("severity", "event.severity", "smallint", index=True, on_error="null"),
    )


BAD_FILES = [
    ('[pipelines.a]\ntable = "t_a"\ncolour = "red"\n', "pipeline 'a', key 'colour'", "unknown key"),
    (
        '[pipelines.a]\ntable = "t_a"\nbatch_size = "500"\n',
        "pipeline 'a', key 'batch_size'",
        "an integer from 1 to 10000",
    ),
    ('[pipelines.a]\ntable = "t_a"\nbatch_size = 0\n', "pipeline 'a', key 'batch_size'", "an integer from 1 to 10000"),
    ('[pipelines.a]\ntable = "t_a"\nenabled = "yes"\n', "pipeline 'a', key 'enabled'", "true or false"),
    ('[pipelines.a]\ntable = "t_a"\ndelete_mode = "all"\n', "pipeline 'a', key 'delete_mode'", "soft, hard, off"),
    ('[pipelines.a]\ntable = "t_a"\ndelete_max_fraction = 2\n', "pipeline 'a', key 'delete_max_fraction'", "from 0"),
    ('[pipelines.a]\ntable = "Bad-Table"\n', "pipeline 'a', key 'table'", "identifier"),
    ('[pipelines.a]\ntable = "rtarf_sync_runs"\n', "pipeline 'a', key 'table'", "rtarf_sync_"),
    (
        '[pipelines.a]\ntable = "t_a"\nwebhook_events = ["sync.nope"]\n',
        "pipeline 'a', key 'webhook_events'",
        "sync.failed",
    ),
    ('[pipelines.a]\ntable = "t"\n[pipelines.b]\ntable = "t"\n', "pipeline 'b', key 'table'", "pipeline 'a'"),
    ("[pipelines.a]\n[pipelines.b]\n", "pipeline 'b', key 'table'", "'rtarf_events'"),
    ('[pipelines.Alerts]\ntable = "t_a"\n', "pipeline 'Alerts'", "lowercase"),
    (
        '[pipelines.a]\ntable = "t_a"\ncolumns = { "source-ip" = { path = "source.ip", type = "inet" } }\n',
        "pipeline 'a', key 'columns'",
        "column 'source-ip'",
    ),
    (
        '[pipelines.a]\ntable = "t_a"\ncolumns = { source = { path = "x", type = "text" } }\n',
        "pipeline 'a', key 'columns'",
        "the name is taken",
    ),
    (
        '[pipelines.a]\ntable = "t_a"\ncolumns = { ip = { path = "source.ip", type = "ip" } }\n',
        "pipeline 'a', key 'columns'",
        "not 'ip'",
    ),
    (
        '[pipelines.a]\ntable = "t_a"\ncolumns = { ip = { path = "source.ip", type = "inet", unique = true } }\n',
        "pipeline 'a', key 'columns'",
        "unknown key 'unique'",
    ),
    (
        '[pipelines.a]\ntable = "t_a"\ncolumns = { ip = { path = "source.*", type = "inet" } }\n',
        "pipeline 'a', key 'columns'",
        "path must be a dotted field name",
    ),
    (
        '[pipelines.a]\ntable = "t_a"\ncolumns = { ip = { type = "inet" } }\n',
        "pipeline 'a', key 'columns'",
        "path None",
    ),
    ('[pipelines.a]\ntable = "t_a"\nquery = "event.kind:alert"\n', "pipeline 'a', key 'query'", "query DSL"),
    ('[pipelines.a]\ntable = "t_a"\nsource_excludes = "user.email"\n', "pipeline 'a', key 'source_excludes'", "a list"),
    ('[pipelines.a]\ntable = "t_a"\npartition = "week"\n', "pipeline 'a', key 'partition'", '"day" or "month"'),
    ('[pipelines.a]\ntable = "t_a"\nretention_days = 30\n', "pipeline 'a', key retention_days", "set partition"),
    (
        '[pipelines.a]\ntable = "t_a"\npartition = "day"\nlegal_hold = [["2026-02-01", "2026-01-01"]]\n',
        "pipeline 'a', key legal_hold",
        "from must be before to",
    ),
    (
        '[pipelines.a]\ntable = "t_a"\npartition = "day"\nlegal_hold = ["2026-02-01"]\n',
        "pipeline 'a', key 'legal_hold'",
        "date pairs",
    ),
    ("[defaults]\nbatch_size = -1\n[pipelines.a]\n", "[defaults], key 'batch_size'", "an integer"),
    ("[default]\n[pipelines.a]\n", "unknown top-level key 'default'", ""),
    ("[defaults]\ninterval_seconds = 5\n", "no pipelines", ""),
    ('[pipelines.a]\ntable = "t_a"\nindex = "bad index"\n', "pipeline 'a', key 'index'", "an index"),
]


@pytest.mark.parametrize(("text", "where", "expected"), BAD_FILES)
def test_a_bad_file_names_the_pipeline_and_the_key(tmp_path: Path, text: str, where: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("RTARF_PIPELINES_FILE=")
    assert where in message and expected in message


def test_a_file_that_is_not_toml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not TOML: .*line 3"):
        _load(tmp_path, '[pipelines.a]\ntable = "t_a"\nbatch_size = = 3\n')


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"RTARF_PIPELINES_FILE=.*cannot read the file"):
        load_pipelines({"RTARF_PIPELINES_FILE": str(tmp_path / "missing.toml")})


def test_gunicorn_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.toml"
    path.write_text('[pipelines.alerts]\ntable = "t_a"\nslices = 99\n', encoding="utf-8")
    environ = {key: value for key, value in os.environ.items() if not key.startswith("RTARF_")}
    environ["RTARF_PIPELINES_FILE"] = str(path)
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if "RTARF_PIPELINES_FILE" in line]
    assert len(lines) == 1 and "pipeline 'alerts', key 'slices'" in lines[0], done.stderr

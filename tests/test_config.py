"""Configuration: bad values stop start-up with one line naming the variable and the value.

`load_settings` is checked directly, and the two ways to start the service
(gunicorn with gunicorn.conf.py, and `python wsgi.py`) are started as real
processes to show they exit non-zero with that one line on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent

BAD_VALUES = [
    ("RTARF_SYNC_INTERVAL_SECONDS", "abc"),
    ("RTARF_SYNC_INTERVAL_SECONDS", "0"),
    ("RTARF_SYNC_INTERVAL_SECONDS", "-5"),
    ("RTARF_SYNC_INTERVAL_SECONDS", "90000"),
    ("RTARF_SYNC_ENABLED", "maybe"),
    ("RTARF_TABLE", "events; drop table x"),
    ("RTARF_TABLE", "Events"),
    ("RTARF_TABLE", "1events"),
    ("RTARF_TABLE", "e" * 64),
    ("RTARF_DATABASE_URL", "not a url"),
    ("RTARF_DATABASE_URL", "postgresql://user@host:notaport/rtarf"),
    ("RTARF_DATABASE_URL", "mysql://user@host/rtarf"),
    ("RTARF_DATABASE_URL", "postgresql://user@host:5432/"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES)
def test_load_settings_names_the_variable_and_the_value(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value})
    message = str(caught.value)
    assert name in message
    assert repr(value) in message
    assert "\n" not in message


def test_a_63_byte_table_name_is_accepted() -> None:
    assert load_settings({"RTARF_TABLE": "e" * 63}).table == "e" * 63


def test_a_bad_database_url_does_not_echo_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"RTARF_DATABASE_URL": "postgresql://user:hunter2-pw@host:notaport/rtarf"})
    assert "hunter2-pw" not in str(caught.value)
    assert "RTARF_DATABASE_URL" in str(caught.value)


def test_defaults_match_the_design() -> None:
    settings = load_settings({})
    assert settings.sync_enabled is True
    assert settings.sync_interval_seconds == 300
    assert settings.es_urls == ("http://localhost:9200",)
    assert settings.es_index == "rtarf-events*"
    assert settings.table == "rtarf_events"
    assert settings.api_token is None
    assert settings.log_level == "INFO"
    assert settings.bind == "127.0.0.1:8000"  # closed by default: no token, loopback only
    assert settings.allow_unauthenticated is False


@pytest.mark.parametrize(
    ("environ", "bind"),
    [
        ({"PORT": "9001"}, "0.0.0.0:9001"),
        ({"RTARF_API_TOKEN": "a-token-of-16-chars"}, "0.0.0.0:8000"),
        ({"RTARF_BIND": "127.0.0.1:8123"}, "127.0.0.1:8123"),
        ({"RTARF_BIND": "127.0.0.1:8123", "PORT": "9001"}, "127.0.0.1:8123"),
    ],
)
def test_the_bind_address_follows_rtarf_bind_then_port(environ: dict[str, str], bind: str) -> None:
    assert load_settings(environ).bind == bind


@pytest.mark.parametrize(
    ("name", "value"), [("PORT", "http"), ("RTARF_BIND", "somewhere"), ("RTARF_GRACEFUL_TIMEOUT_SECONDS", "0")]
)
def test_bad_serving_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_a_token_with_characters_a_header_cannot_carry_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"RTARF_API_TOKEN": "two words-secretish"})
    assert "RTARF_API_TOKEN" in str(caught.value)
    assert "secretish" not in str(caught.value)


def _start(argv: list[str], name: str, value: str) -> subprocess.CompletedProcess[str]:
    env = {key: val for key, val in os.environ.items() if not key.startswith("RTARF_")}
    env[name] = value
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


STARTERS = {
    "gunicorn": ["-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0", "wsgi:app"],
    "python wsgi.py": ["wsgi.py"],
}


@pytest.mark.parametrize("starter", sorted(STARTERS))
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RTARF_SYNC_INTERVAL_SECONDS", "abc"),
        ("RTARF_SYNC_INTERVAL_SECONDS", "0"),
        ("RTARF_SYNC_INTERVAL_SECONDS", "-5"),
        ("RTARF_SYNC_INTERVAL_SECONDS", "90000"),
        ("RTARF_SYNC_ENABLED", "maybe"),
        ("RTARF_TABLE", "bad-name"),
        ("RTARF_TABLE", "t" * 64),
        ("RTARF_DATABASE_URL", "postgresql://user@host:notaport/rtarf"),
    ],
)
def test_start_up_stops_with_one_line_naming_the_variable(starter: str, name: str, value: str) -> None:
    completed = _start(STARTERS[starter], name, value)
    assert completed.returncode == 2, completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("rtarf-sync: configuration error: ")
    assert name in lines[0]
    assert repr(value) in lines[0]

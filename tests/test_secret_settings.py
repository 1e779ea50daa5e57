"""Secrets and reserved names in the configuration: `X_FILE` secrets, the token's length, RTARF_TABLE.

Every secret variable may come from a file instead (Docker and Kubernetes
secrets); both set is an error, an unreadable file names the variable and never
the content, and a name of the service's own tables is refused as RTARF_TABLE.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from config import SECRET_FILE_VARIABLES, STATE_TABLE_PREFIX, ConfigError, load_settings
from rtarf_sync.engine.target import tables
from rtarf_sync.engine.target.migrations import version_table
from rtarf_sync.engine.checks.reconcile import _WORK_TABLES
from rtarf_sync.notify.outbox import ENDPOINTS_TABLE, MESSAGES_TABLE

TOKEN = "file-token-0123456789"
WEBHOOK_SECRET = "whsec_Q2FuYXJ5V2ViaG9va0tleS0wMTIzNDU2Nzg5"
DATABASE_URL = "postgresql+psycopg://app:Pw-From-File-9@db:5432/rtarf"

# variable -> (a valid value, how to read it back from Settings, extra variables it needs)
SECRETS = {
    "RTARF_API_TOKEN": (TOKEN, lambda s: s.api_token.reveal(), {}),
    "RTARF_ES_PASSWORD": ("Es-Pw-From-File-1", lambda s: s.es_password.reveal(), {"RTARF_ES_USERNAME": "elastic"}),
    "RTARF_ES_API_KEY": ("ApiKey-From-File-2==", lambda s: s.es_api_key.reveal(), {}),
    "RTARF_WEBHOOK_SECRET": (WEBHOOK_SECRET, lambda s: s.webhooks.secret.reveal(), {}),
    "RTARF_DATABASE_URL": (DATABASE_URL, lambda s: s.database_url.reveal(), {}),
    "RTARF_WEBHOOK_URLS": (
        "https://chat.example.com/hooks/T0/B0/sEcReT",
        lambda s: s.webhooks.urls[0].reveal(),
        {"RTARF_WEBHOOK_SECRET": WEBHOOK_SECRET},
    ),
    "RTARF_ES_PROXY": ("http://squid:Proxy-Pw-From-File-3@proxy.internal:3128", lambda s: s.es_proxy.reveal(), {}),
}


def test_every_secret_variable_is_covered_here() -> None:
    assert set(SECRETS) == set(SECRET_FILE_VARIABLES)


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_each_secret_can_come_from_a_file_without_its_trailing_newline(name: str, tmp_path: Path) -> None:
    value, read, extra = SECRETS[name]
    path = tmp_path / "secret"
    path.write_text(value + "\n")
    settings = load_settings({f"{name}_FILE": str(path), **extra})
    assert read(settings) == value
    assert load_settings({name: value, **extra}) == settings


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_a_secret_and_its_file_both_set_is_an_error(name: str, tmp_path: Path) -> None:
    value, _, extra = SECRETS[name]
    path = tmp_path / "secret"
    path.write_text(value)
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value, f"{name}_FILE": str(path), **extra})
    assert f"{name}_FILE" in str(caught.value) and value not in str(caught.value)


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_an_unreadable_secret_file_names_the_variable_not_the_content(name: str, tmp_path: Path) -> None:
    value, _, extra = SECRETS[name]
    missing = tmp_path / "absent"
    with pytest.raises(ConfigError, match=f"{name}_FILE") as caught:
        load_settings({f"{name}_FILE": str(missing), **extra})
    assert "\n" not in str(caught.value)
    unreadable = tmp_path / "not-text"
    unreadable.write_bytes(b"\xff\xfe" + value.encode())
    with pytest.raises(ConfigError, match=f"{name}_FILE") as caught:
        load_settings({f"{name}_FILE": str(unreadable), **extra})
    assert value not in str(caught.value)


def test_an_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_text("\n")
    with pytest.raises(ConfigError, match="RTARF_API_TOKEN_FILE"):
        load_settings({"RTARF_API_TOKEN_FILE": str(path)})


def test_a_bad_value_read_from_a_file_is_refused_like_the_variable(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("short-token\n")
    with pytest.raises(ConfigError) as caught:
        load_settings({"RTARF_API_TOKEN_FILE": str(path)})
    assert "RTARF_API_TOKEN" in str(caught.value) and "short-token" not in str(caught.value)


@pytest.mark.parametrize("token", ["", "x" * 15, "fifteen-chars-ok"[:15]])
def test_a_token_under_16_characters_is_refused_without_showing_it(token: str) -> None:
    if not token:
        assert load_settings({"RTARF_API_TOKEN": token}).api_token is None  # empty means unset
        return
    with pytest.raises(ConfigError) as caught:
        load_settings({"RTARF_API_TOKEN": token})
    assert "RTARF_API_TOKEN" in str(caught.value) and "16" in str(caught.value)
    assert token not in str(caught.value)


def test_a_16_character_token_is_accepted() -> None:
    assert load_settings({"RTARF_API_TOKEN": "x" * 16}).api_token.reveal() == "x" * 16  # type: ignore[union-attr]  # set just above


def _own_tables(target: str) -> list[str]:
    """Every table name the service keeps beside a target (the work tables by their run-id prefix)."""
    state = [
        tables.CURSOR_TABLE,
        tables.LEASE_TABLE,
        tables.RUNS_TABLE,
        tables.DEAD_LETTER_TABLE,
        tables.VERIFICATIONS_TABLE,
        MESSAGES_TABLE,
        ENDPOINTS_TABLE,
        version_table(target),
    ]
    return state + [f"{prefix}42" for prefix in _WORK_TABLES]


def test_every_table_of_the_service_carries_the_reserved_prefix() -> None:
    for name in _own_tables("rtarf_events"):
        assert name.startswith(STATE_TABLE_PREFIX), name


@pytest.mark.parametrize("name", _own_tables("rtarf_events"))
def test_rtarf_table_may_not_name_a_table_of_the_service(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"RTARF_TABLE": name})
    message = str(caught.value)
    assert message.startswith("RTARF_TABLE=") and repr(name) in message
    assert re.search(STATE_TABLE_PREFIX, message)


def test_an_ordinary_table_name_close_to_the_prefix_is_accepted() -> None:
    assert load_settings({"RTARF_TABLE": "rtarf_sync"}).table == "rtarf_sync"
    assert load_settings({"RTARF_TABLE": "rtarf_synced_events"}).table == "rtarf_synced_events"

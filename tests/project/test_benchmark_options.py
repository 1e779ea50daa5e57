"""The benchmark commands refuse options they cannot act on, naming the bad value, before starting any engine."""

from __future__ import annotations

import pytest

from benchmarks.freshness import parse_args


def test_an_unknown_freshness_scenario_is_refused_with_its_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--scenarios", "trigger,keepup"])
    assert stopped.value.code == 2
    assert "unknown scenario 'keepup': choose from trigger, interval, high" in capsys.readouterr().err


def test_the_known_freshness_scenarios_are_taken() -> None:
    assert parse_args(["--scenarios", "high,trigger"]).scenarios == "high,trigger"


def test_the_freshness_fill_defaults_to_the_overlap_and_refuses_a_negative_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args([]).fill == 60
    assert parse_args(["--overlap", "10"]).fill == 10
    assert parse_args(["--fill", "0"]).fill == 0
    with pytest.raises(SystemExit) as stopped:
        parse_args(["--fill", "-5"])
    assert stopped.value.code == 2
    assert "--fill must be 0 or more seconds, not -5" in capsys.readouterr().err

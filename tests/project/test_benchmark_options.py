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

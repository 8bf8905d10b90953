"""Scenario presets and the TOML scenario format: valid input loads, bad input is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispenser.sim.scenario import PRESETS, ScenarioError, load_scenario


def test_every_preset_is_valid_and_loadable_by_name() -> None:
    assert "station-peak" in PRESETS
    for name in PRESETS:
        assert load_scenario(name).name == name


def test_a_scenario_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "corner-shop.toml"
    path.write_text("""
[scenario]
description = "tiny"
duration_min = 15
arrivals_per_hour = 40
repeat_after_min = [1, 3]
staff = 0

[sweep]
thresholds = [0.9, 0.95]
deny_windows_s = [300]
""")
    s = load_scenario(str(path))
    assert s.name == "corner-shop" and s.duration_min == 15.0 and s.staff == 0
    assert s.repeat_after_min == (1.0, 3.0)
    assert s.sweep.thresholds == (0.9, 0.95) and s.sweep.deny_windows_s == (300.0,)
    assert s.roll_m == 300.0  # default kept


@pytest.mark.parametrize(("text", "message"), [
    ("[scenario]\nduraton_min = 5\n", "unknown key scenario.duraton_min"),
    ("[scenario]\nrepeat_share = 1.5\n", "repeat_share = 1.5 is out of range"),
    ("[scenario]\nstaff = 2.5\n", "staff = 2.5 must be an integer"),
    ("[scenario]\narrivals_per_hour = \"many\"\n", "wrong type"),
    ("[scenario]\nrepeat_after_min = [9, 3]\n", "repeat_after_min"),
    ("[sweep]\nthresholds = [0.9]\n", "needs a [scenario] table"),
    ("[scenario]\n[sweep]\ndeny_windows_s = [900]\n", "deny window 900 s is out of range"),
    ("[scenario]\n[crowd]\n", "unknown table [crowd]"),
    ("[scenario\n", "not valid TOML"),
])
def test_bad_scenario_files_name_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[")):
        load_scenario(str(path))


def test_unknown_preset_and_missing_file() -> None:
    with pytest.raises(ScenarioError, match=r"unknown preset 'rush-hour'.*station-peak"):
        load_scenario("rush-hour")
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario("/nonexistent/crowd.toml")

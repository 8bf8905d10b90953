"""Crowd scenarios: who comes to the machine, how often, and what the operator sweeps.

A scenario is a small TOML file (format in docs/simulator.md) or one of the built-in
presets (`PRESETS`). Loading validates every key with one-line errors that name the key,
like the configuration loader does, so a typo never silently runs a different crowd.

    [scenario]
    name = "my-station"
    description = "what this crowd is"
    duration_min = 60          # simulated minutes
    arrivals_per_hour = 300    # Poisson arrivals of distinct visitors
    repeat_share = 0.15        # share of visitors who come back for more paper
    repeat_after_min = [2, 20] # ... after a uniform number of minutes in this range
    repeat_times = 1           # ... this many times
    staff = 2                  # staff members who pass in front of the camera
    staff_every_min = 6        # ... each about this often
    button_share = 0.05        # share of visits that use the no-scan button instead
    patience_s = 180           # a visitor who would queue longer than this leaves
    roll_m = 300               # paper on a full roll (metres)

    [sweep]
    thresholds = [0.40, 0.45, 0.50]  # optional; default: from the similarity table
    deny_windows_s = [120, 300, 540]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dispenser.config import RETENTION_CEILING_S
from dispenser.errors import DispenserError
from dispenser.tomlfile import read_toml


class ScenarioError(DispenserError):
    """A scenario file or preset name is invalid (one line naming the key)."""


@dataclass(frozen=True)
class Sweep:
    """The settings grid the report compares (every pair is one simulated run)."""

    # Empty: derived from the similarity table the people copy, so the sweep suits any
    # embedder's cosine scale (dispenser.sim.crowd.SWEEP_SHARES).
    thresholds: tuple[float, ...] = ()
    deny_windows_s: tuple[float, ...] = (120.0, 300.0, 540.0)


@dataclass(frozen=True)
class Scenario:
    """One crowd. Rates are per simulated hour, times in simulated minutes."""

    name: str
    description: str = ""
    duration_min: float = 60.0
    arrivals_per_hour: float = 300.0
    repeat_share: float = 0.15
    repeat_after_min: tuple[float, float] = (2.0, 20.0)
    repeat_times: int = 1
    staff: int = 2
    staff_every_min: float = 6.0
    button_share: float = 0.05
    patience_s: float = 180.0
    roll_m: float = 300.0
    sweep: Sweep = field(default_factory=Sweep)

    def __post_init__(self) -> None:
        _check(self)


# (key, low, high) bounds, checked on construction and on load.
_BOUNDS: dict[str, tuple[float, float]] = {
    "duration_min": (1.0, 24 * 60.0),
    "arrivals_per_hour": (0.0, 3600.0),
    "repeat_share": (0.0, 1.0),
    "repeat_times": (1, 20),
    "staff": (0, 50),
    "staff_every_min": (0.5, 240.0),
    "button_share": (0.0, 1.0),
    "patience_s": (0.0, 3600.0),
    "roll_m": (1.0, 10_000.0),
}


def _check(s: Scenario) -> None:
    if not s.name or not s.name.replace("-", "").replace("_", "").isalnum():
        raise ScenarioError(f"scenario: name {s.name!r} must be letters, digits, '-' or '_'")
    for key, (lo, hi) in _BOUNDS.items():
        value = getattr(s, key)
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ScenarioError(f"scenario: {key} = {value!r} is out of range "
                                f"(allowed {lo:g} <= x <= {hi:g})")
    lo, hi = s.repeat_after_min
    if not (0.1 <= lo <= hi <= 24 * 60.0):
        raise ScenarioError(f"scenario: repeat_after_min = [{lo:g}, {hi:g}] must satisfy "
                            "0.1 <= first <= second <= 1440")
    if not s.sweep.deny_windows_s:
        raise ScenarioError("sweep: deny_windows_s must not be empty")
    for t in s.sweep.thresholds:
        if not -1.0 <= t <= 1.0:
            raise ScenarioError(f"sweep: threshold {t:g} is out of range (allowed -1 <= x <= 1)")
    for w in s.sweep.deny_windows_s:
        if not 0.0 < w <= RETENTION_CEILING_S:
            raise ScenarioError(f"sweep: deny window {w:g} s is out of range "
                                f"(allowed 0 < x <= {RETENTION_CEILING_S:g})")
    if max(len(s.sweep.thresholds), 7) * len(s.sweep.deny_windows_s) > 200:
        raise ScenarioError("sweep: at most 200 (threshold, deny window) pairs")


PRESETS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        name="station-peak",
        description="railway station toilet at rush hour: a steady stream, some people "
                    "coming back for more, cleaners passing every few minutes",
        arrivals_per_hour=200.0, repeat_share=0.2, repeat_after_min=(1.0, 15.0),
        staff=3, staff_every_min=5.0, button_share=0.05, roll_m=300.0),
    Scenario(
        name="station-offpeak",
        description="the same toilet late in the evening: few visitors, staff still around",
        arrivals_per_hour=60.0, repeat_share=0.1, repeat_after_min=(2.0, 20.0),
        staff=2, staff_every_min=10.0, button_share=0.05, roll_m=300.0),
    Scenario(
        name="mall",
        description="shopping-mall toilet: moderate traffic, few repeats",
        arrivals_per_hour=120.0, repeat_share=0.08, repeat_after_min=(5.0, 40.0),
        staff=1, staff_every_min=15.0, button_share=0.03, roll_m=300.0),
    Scenario(
        name="scenic-spot",
        description="tourist site where paper used to be carried off: many repeat-takers "
                    "coming back two or three times",
        arrivals_per_hour=150.0, repeat_share=0.35, repeat_after_min=(1.0, 10.0),
        repeat_times=2, staff=2, staff_every_min=8.0, button_share=0.05, roll_m=300.0),
)}


def _as_float(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"scenario: {key} = {value!r} has the wrong type (expected a number)")
    return float(value)


def _as_list(key: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list):
        raise ScenarioError(f"scenario: {key} = {value!r} has the wrong type "
                            "(expected a list of numbers)")
    return tuple(_as_float(key, v) for v in value)


def _scenario_table(table: dict[str, Any], default_name: str) -> dict[str, Any]:
    known = {f.name for f in fields(Scenario)} - {"sweep"}
    values: dict[str, Any] = {"name": default_name}
    for key, raw in table.items():
        if key not in known:
            raise ScenarioError(f"scenario: unknown key scenario.{key} "
                                f"(known: {', '.join(sorted(known))})")
        if key in ("name", "description"):
            if not isinstance(raw, str):
                raise ScenarioError(f"scenario: {key} = {raw!r} must be a string")
            values[key] = raw
        elif key == "repeat_after_min":
            pair = _as_list(f"scenario.{key}", raw)
            if len(pair) != 2:
                raise ScenarioError(f"scenario: {key} must be [low, high] minutes")
            values[key] = pair
        elif key in ("repeat_times", "staff"):
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise ScenarioError(f"scenario: {key} = {raw!r} must be an integer")
            values[key] = raw
        else:
            values[key] = _as_float(f"scenario.{key}", raw)
    return values


def _sweep_table(table: dict[str, Any]) -> Sweep:
    known = {f.name for f in fields(Sweep)}
    values: dict[str, tuple[float, ...]] = {}
    for key, raw in table.items():
        if key not in known:
            raise ScenarioError(f"scenario: unknown key sweep.{key} "
                                f"(known: {', '.join(sorted(known))})")
        values[key] = _as_list(f"sweep.{key}", raw)
    return Sweep(**values)


def scenario_from_mapping(data: dict[str, Any], default_name: str) -> Scenario:
    """Validate a parsed scenario document (tables `scenario` and optional `sweep`)."""
    unknown = set(data) - {"scenario", "sweep"}
    if unknown:
        raise ScenarioError(f"scenario: unknown table [{sorted(unknown)[0]}] "
                            "(known: scenario, sweep)")
    table = data.get("scenario")
    if not isinstance(table, dict):
        raise ScenarioError("scenario: the file needs a [scenario] table")
    values = _scenario_table(table, default_name)
    sweep = data.get("sweep", {})
    if not isinstance(sweep, dict):
        raise ScenarioError("scenario: [sweep] must be a table")
    return Scenario(**values, sweep=_sweep_table(sweep))


def load_scenario(spec: str) -> Scenario:
    """A preset by name, or a TOML scenario file by path."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.suffix and not path.exists():
        raise ScenarioError(f"scenario: unknown preset {spec!r} "
                            f"(presets: {', '.join(PRESETS)}; or give a .toml file)")
    data = read_toml(path, "scenario", ScenarioError)
    return scenario_from_mapping(data, default_name=path.stem)

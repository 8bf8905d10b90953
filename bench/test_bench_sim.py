"""The crowd simulator: how much faster than real time an operator's study runs.

Run: pytest bench/test_bench_sim.py  (figures go to docs/simulator.md, "Timings").

* `test_one_simulated_hour`: one hour of the `station-peak` preset through the real
  TemplateStore on a virtual clock (every decision, commit, sweep, key rotation).
* `test_speed_ratio`: the target, as a ratio measured here and now: simulated seconds per
  wall second of that hour, best of several rounds so other load on the machine does not
  decide it. "One simulated hour in well under a minute" means a ratio far above 60.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from dispenser.config import Settings
from dispenser.sim.crowd import Crowd, RunSettings, generate_crowd, run_crowd
from dispenser.sim.identities import IdentityModel
from dispenser.sim.scenario import PRESETS
from dispenser.sim.similarity import PROVISIONAL_DLIB

# One simulated hour must take well under a minute: at least this many times real time.
MIN_SPEEDUP = 60.0
_CONFIGURED = RunSettings(threshold=0.93, deny_window_s=540.0)


@pytest.fixture(scope="module")
def crowd() -> Crowd:
    crowd = generate_crowd(PRESETS["station-peak"], IdentityModel.fit(PROVISIONAL_DLIB), 1)
    run_crowd(crowd, PRESETS["station-peak"], Settings(), _CONFIGURED)  # numba warm-up
    return crowd


def test_one_simulated_hour(benchmark: Any, crowd: Crowd) -> None:
    benchmark.group = "sim: one simulated hour of station-peak (real store, virtual clock)"
    result = benchmark.pedantic(run_crowd, args=(crowd, PRESETS["station-peak"], Settings(),
                                                 _CONFIGURED), rounds=5, iterations=1)
    benchmark.extra_info.update(visits=len(crowd), decisions=result.face_visits)
    assert result.served > 0


def test_speed_ratio(crowd: Crowd) -> None:
    scenario = PRESETS["station-peak"]
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        run_crowd(crowd, scenario, Settings(), _CONFIGURED)
        best = min(best, time.perf_counter() - start)
    speedup = scenario.duration_min * 60.0 / best
    assert speedup > MIN_SPEEDUP, f"one simulated hour ran only {speedup:.0f}x real time"

"""bench/bench_timing.py, the timer behind the benchmarks' speed-ratio targets: the
contenders take turns, and a ratio is taken within a round (checked on an injected clock)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCH_TIMING = Path(__file__).resolve().parent.parent / "bench" / "bench_timing.py"


@pytest.fixture(scope="module")
def bench_timing() -> ModuleType:
    """bench/ is not a package: load the module from its file."""
    spec = importlib.util.spec_from_file_location("bench_timing", BENCH_TIMING)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Machine:
    """A virtual clock whose speed changes between rounds: every call costs its work
    times the current slowness."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slowness = 1.0
        self.calls: list[str] = []

    def contender(self, name: str, work: float) -> Callable[[], None]:
        def run() -> None:
            self.calls.append(name)
            self.now += work * self.slowness
        return run


def test_contenders_take_turns_after_one_untimed_run_each(
        bench_timing: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = _Machine()
    monkeypatch.setattr(bench_timing.time, "perf_counter", lambda: machine.now)
    rounds = bench_timing.timed_rounds({"a": machine.contender("a", 1.0),
                                        "b": machine.contender("b", 2.0)}, rounds=3)
    assert machine.calls == ["a", "b"] * 4
    assert rounds == [{"a": 1.0, "b": 2.0}] * 3


def test_the_ratio_is_taken_within_a_round_when_the_machine_drifts(
        bench_timing: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """ours does a quarter of the reference's work; the machine's speed changes between
    rounds (and once within one). The median per-round ratio finds the quarter; the ratio of
    the two bests, taken from different states of the machine, says an eighth."""
    machine = _Machine()
    monkeypatch.setattr(bench_timing.time, "perf_counter", lambda: machine.now)
    # slowness per call: the untimed warm-up, then rounds 1-3, ours before the reference
    slowness = iter([1.0, 1.0, 3.0, 3.0, 0.5, 1.0, 2.0, 2.0])

    def on_drifting_machine(run: Callable[[], None]) -> Callable[[], None]:
        def timed() -> None:
            machine.slowness = next(slowness)
            run()
        return timed

    contenders = {"ours": on_drifting_machine(machine.contender("ours", 1.0)),
                  "ref": on_drifting_machine(machine.contender("ref", 4.0))}
    measured = bench_timing.timed_rounds(contenders, rounds=3)
    assert measured == [{"ours": 3.0, "ref": 12.0}, {"ours": 0.5, "ref": 4.0},
                        {"ours": 2.0, "ref": 8.0}]
    assert bench_timing.median_ratios(measured, "ref") == {"ours": 0.25, "ref": 1.0}
    best = {name: min(r[name] for r in measured) for name in contenders}
    assert best["ours"] / best["ref"] == 0.125


def test_best_of_is_each_contenders_fastest_round(bench_timing: ModuleType,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    machine = _Machine()
    monkeypatch.setattr(bench_timing.time, "perf_counter", lambda: machine.now)
    slowness = iter([1.0, 1.0, 3.0, 0.5, 1.0, 2.0])

    def run() -> None:
        machine.slowness = next(slowness)
        machine.contender("x", 2.0)()

    assert bench_timing.best_of({"x": run}, rounds=5) == {"x": 1.0}

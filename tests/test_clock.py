"""The clock: virtual time for tests, CLOCK_BOOTTIME for the device (invariant 3)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dispenser.clock import BootClock, ScaledClock, VirtualClock


def test_virtual_clock_moves_only_when_told(clock: VirtualClock) -> None:
    t0 = clock.now()
    assert clock.now() == t0
    assert clock.advance(5.5) == t0 + 5.5
    clock.set(t0 + 100)
    assert clock.now() == t0 + 100


def test_virtual_clock_never_goes_back(clock: VirtualClock) -> None:
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.set(clock.now() - 1)


def test_virtual_sleeper_wakes_when_time_reaches_deadline(clock: VirtualClock) -> None:
    woke = threading.Event()
    result: list[bool] = []

    def sleeper() -> None:
        result.append(clock.sleep_until(clock.now() + 600, threading.Event()))
        woke.set()

    t = threading.Thread(target=sleeper)
    t.start()
    clock.advance(599)
    assert not woke.wait(0.3), "woke before its deadline"
    clock.advance(1)
    assert woke.wait(5), "did not wake at its deadline"
    t.join()
    assert result == [True]


def test_virtual_sleeper_can_be_cancelled(clock: VirtualClock) -> None:
    cancel = threading.Event()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(clock.sleep_until(1e9, cancel)))
    t.start()
    cancel.set()
    t.join(5)
    assert not t.is_alive() and result == [False]


def test_boot_clock_uses_boottime_on_linux() -> None:
    clock = BootClock()
    if hasattr(time, "CLOCK_BOOTTIME"):
        assert clock.source == "CLOCK_BOOTTIME"
        assert abs(clock.now() - time.clock_gettime(time.CLOCK_BOOTTIME)) < 1.0
    else:
        assert clock.source == "monotonic"


def test_boot_clock_is_monotonic_and_ignores_wall_clock_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = BootClock()
    before = clock.now()
    # A wall-clock change (NTP step, operator error) shows up only in time.time().
    monkeypatch.setattr(time, "time", lambda: 0.0)
    after = clock.now()
    assert after >= before
    assert after - before < 1.0


def test_boot_clock_sleep_until(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = BootClock()
    assert clock.sleep_until(clock.now() + 0.01, threading.Event()) is True
    cancel = threading.Event()
    cancel.set()
    assert clock.sleep_until(clock.now() + 60, cancel) is False


def test_no_module_measures_ages_with_wall_clock(repo_root: Path) -> None:
    root = repo_root
    offenders = [str(p.relative_to(root)) for d in ("src", "firmware_sim")
                 for p in (root / d).rglob("*.py") if "time.time()" in p.read_text()]
    assert offenders == []


def test_scaled_clock_runs_speed_times_faster_than_its_real_clock(clock: VirtualClock) -> None:
    scaled = ScaledClock(speed=60, start=5.0, real=clock)
    assert scaled.now() == 5.0
    clock.advance(10)
    assert scaled.now() == 5.0 + 600


def test_scaled_sleeper_wakes_when_scaled_time_reaches_deadline(clock: VirtualClock) -> None:
    scaled = ScaledClock(speed=60, real=clock)
    woke = threading.Event()
    t = threading.Thread(target=lambda: (scaled.sleep_until(600, threading.Event()), woke.set()))
    t.start()
    clock.advance(9.9)  # 594 scaled seconds
    assert not woke.wait(0.3), "woke before its deadline"
    clock.advance(0.1)
    assert woke.wait(5), "did not wake at its deadline"
    t.join()


def test_scaled_clock_sleep_can_be_cancelled_and_rejects_bad_speed() -> None:
    scaled = ScaledClock(speed=1000)
    assert scaled.sleep_until(scaled.now() + 5, threading.Event()) is True
    cancel = threading.Event()
    cancel.set()
    assert scaled.sleep_until(scaled.now() + 1e6, cancel) is False
    for bad in (0.0, -2.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive"):
            ScaledClock(speed=bad)

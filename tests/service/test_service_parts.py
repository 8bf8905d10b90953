"""The service's small parts: hold-still collector, target choice, motion gate, watchdog,
status file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from service_doubles import FakeFace, FakeQuality, FakeTrack, identity

from dispenser.errors import DispenserError
from dispenser.service.holdstill import HoldStill, choose_target
from dispenser.service.motion import MotionGate
from dispenser.service.status import (
    ServiceCounters,
    format_status,
    read_status,
    status_record,
    write_status,
)
from dispenser.service.watchdog import Watchdog


def _track(tid: int, size: float, ok: bool = True, lost: bool = False) -> FakeTrack:
    face = FakeFace((0.0, 0.0, size, size), 0.99, FakeQuality(ok, "ok" if ok else "blurry"),
                    tid)
    return FakeTrack(tid, face, 0.0, lost=lost)


def test_choose_target_prefers_the_current_then_the_largest_passing_face() -> None:
    small, big, blurry, gone = _track(1, 40), _track(2, 80), _track(3, 120, ok=False), \
        _track(4, 200, lost=True)
    tracks = [small, big, blurry, gone]
    assert choose_target(tracks, None, set()) is big
    assert choose_target(tracks, 1, set()) is small          # sticks to the current one
    assert choose_target(tracks, None, {2}) is small         # decided ones are skipped
    assert choose_target([blurry, gone], None, set()) is None
    small.steady_since, small.now = 0.0, 2.0      # steady for 2 s; `big` is moving
    big.steady_since, big.now = 2.0, 2.0
    assert choose_target(tracks, None, set()) is small


def test_choose_target_keeps_a_steady_target_through_a_frame_failing_the_gate() -> None:
    """A blink: the tracker still calls the current target steady, so it stays the target
    (the service neither embeds nor decides on that frame); once the tracker gives up on
    it, the largest passing face takes over."""
    blinking, other = _track(1, 80, ok=False), _track(2, 120)
    blinking.steady_since, blinking.now = 0.0, 1.0
    assert choose_target([blinking, other], 1, set()) is blinking
    assert choose_target([blinking, other], None, set()) is other
    blinking.steady_since = 1.0
    assert choose_target([blinking, other], 1, set()) is other


def test_hold_still_keeps_the_best_k_and_builds_a_unit_probe() -> None:
    hold = HoldStill(3.0, k=3)
    hold.start(7, now=0.0)
    t = 0.0
    ranks = [0.90, 0.95, 0.80, 0.99, 0.85]   # frame ranks (QualityReport.frame_rank)
    kept = 0
    for rank in ranks:
        t += 0.5                              # min gap 3 / (2 * 3) = 0.5 s
        if hold.wants_embedding(rank, t):
            hold.scratch[:] = identity(1)
            hold.keep(rank, t)
            kept += 1
        assert not hold.scratch.any()         # the scratch is wiped after every keep
    assert hold.collected == 3 and kept == 4  # 0.85 cannot beat the kept 0.90/0.95/0.99
    assert not hold.wants_embedding(0.999, 2.4)   # too soon after the last one (t = 2.0)
    assert hold.wants_embedding(0.999, 2.5)
    assert hold.progress(2.9, steady_s=10.0) == pytest.approx(2.9 / 3.0)
    assert hold.progress(2.9, steady_s=1.0) == pytest.approx(1.0 / 3.0)
    assert not hold.complete(2.9, 10.0) and hold.complete(3.0, 10.0)
    probe = hold.build_probe()
    assert float(np.linalg.norm(probe)) == pytest.approx(1.0, abs=1e-6)
    assert float(probe @ identity(1)) == pytest.approx(1.0, abs=1e-5)
    hold.clear()
    assert hold.buffers_zero() and hold.track_id is None


def test_hold_without_templates_is_never_complete() -> None:
    hold = HoldStill(1.0)
    hold.start(1, 0.0)
    assert not hold.complete(5.0, 5.0)


def test_motion_gate_rate_limit_change_and_safety_net() -> None:
    gate = MotionGate(idle_detect_hz=2.0, max_gap_s=10.0)
    empty = np.full((120, 160, 3), 30, np.uint8)
    person = empty.copy()
    person[20:80, 50:110] = 160
    assert gate.should_detect(empty, 0.0)     # no reference yet
    gate.detected(0.0)
    assert not gate.should_detect(person, 0.3)          # rate limit (2 Hz)
    assert not gate.should_detect(empty, 0.6)           # nothing changed
    assert not gate.should_detect(person, 0.7)          # the scene is looked at at 2 Hz too
    assert gate.should_detect(person, 1.1)
    assert gate.change() > 5.0
    assert not gate.should_detect(empty, 5.0)
    assert gate.should_detect(empty, 10.0)              # safety run every 10 s
    noisy = np.clip(empty.astype(np.int16) + np.random.default_rng(0).integers(
        -8, 9, empty.shape), 0, 255).astype(np.uint8)
    gate.detected(10.0)
    assert not gate.should_detect(noisy, 11.0)          # sensor noise averages out
    gate.reset()
    assert gate.should_detect(empty, 11.1)


def test_watchdog() -> None:
    dog = Watchdog(10.0, now=0.0)
    assert not dog.stalled(10.0) and dog.stalled(10.1)
    dog.beat(10.1)
    assert dog.silent_for(15.0) == pytest.approx(4.9)


def test_status_file_round_trip_holds_counters_only(tmp_path: Path) -> None:
    from dataclasses import dataclass

    @dataclass
    class StoreCounts:
        occupancy: int = 3
        deletions: int = 9

    counters = ServiceCounters(served=2, denied=1)
    record = status_record(counters, "idle", 12.7, StoreCounts())
    write_status(tmp_path / "run", record)
    back = read_status(tmp_path / "run")
    assert back == json.loads(json.dumps(record))
    assert back["served"] == 2 and back["store_occupancy"] == 3 and back["uptime_s"] == 12
    assert all(isinstance(v, int) for k, v in back.items() if k != "state")
    assert format_status(back).startswith("state=idle uptime_s=12 frames=0")
    (tmp_path / "run" / "status.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DispenserError, match="is not a status file"):
        read_status(tmp_path / "run")


def test_hold_still_buffers_are_one_block_locked_against_swap() -> None:
    from dispenser.privacy.memory import LOCKS

    asked = LOCKS.locked_bytes + LOCKS.refused_bytes
    hold = HoldStill(3.0, dim=128, k=3)
    assert LOCKS.locked_bytes + LOCKS.refused_bytes - asked == (3 + 2) * 128 * 4
    hold.start(1, 0.0)
    hold.scratch[:] = identity(2)
    hold.keep(0.9, 0.0)
    hold.release()
    assert hold.buffers_zero()

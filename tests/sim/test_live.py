"""Live mode: the real service, store and MotorLink over a pty to firmware_sim, driven by
scripted visitors (the vision stage replaced by synthetic templates)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.config import DisplaySettings, Settings, StoreSettings
from dispenser.service import Message
from dispenser.service.frames import ImageDirSource
from dispenser.sim.identities import IdentityModel
from dispenser.sim.live import MAX_SPEED, Pacer, run_frames, run_scripted
from dispenser.sim.preview import HeadlessPreview, annotate, open_preview
from dispenser.sim.scripted import (
    ScriptedVisit,
    SyntheticCamera,
    SyntheticVision,
    default_script,
    script_end,
)
from dispenser.sim.similarity import PROVISIONAL_DLIB
from dispenser.sim.timeline import Row

# Short windows so a whole story takes a minute of simulated time.
_SETTINGS = Settings(store=StoreSettings(deny_window_s=20.0, retention_s=30.0),
                     display=DisplaySettings(message_s=2.0))


def _story() -> list[ScriptedVisit]:
    """A is served (decided at 5 s), comes back inside the deny window and is denied; B
    steps up once A's template is deleted (retention 30 s from A's decision), so B is
    served however late A's paper went out. While the motor runs, the virtual clock moves
    at least as fast as real time (sim.live.Pacer), so on a loaded host A's paper goes out,
    and A's 20 s deny window starts, later: B arriving at 26 s then met A's template inside
    its window and was denied when the provisional similarity model scored the two
    strangers as a match."""
    return [ScriptedVisit("A", 0, 2.0, 10.0, "served", "first visit"),
            ScriptedVisit("A", 0, 15.0, 8.0, "denied", "inside the window"),
            ScriptedVisit("B", 1, 36.0, 10.0, "served", "first visit")]


def _vision(script: list[ScriptedVisit]) -> SyntheticVision:
    return SyntheticVision(script, IdentityModel.fit(PROVISIONAL_DLIB), seed=1)


def test_scripted_story_serves_denies_and_forgets_with_a_headless_preview() -> None:
    script = _story()
    rows: list[Row] = []
    preview = HeadlessPreview()
    result = run_scripted(_SETTINGS, script, _vision(script), script_end(script, _SETTINGS),
                          speed=float("inf"), emit=rows.append, preview=preview)
    assert [o["observed"] for o in result.outcomes] == ["served", "denied", "served"]
    decisions = [r.decision for r in rows if r.decision]
    assert decisions == ["DISPENSE", "DENY", "DISPENSE"]
    deleted = [r for r in rows if "deleted: retention" in r.event]
    assert [r.who for r in deleted] == ["A", "B"]
    assert deleted[-1].occupancy == 0 and result.counters["store_occupancy"] == 0
    assert result.counters["paper_mm"] >= 2 * _SETTINGS.dispense.ribbon_mm
    assert preview.frames > 0 and preview.last_shape is None  # closed after the run


def test_default_script_follows_the_configured_windows() -> None:
    settings = Settings()
    script = default_script(settings)
    assert [v.expect for v in script] == ["served", "served", "denied", "button", "served"]
    a_visits = [v for v in script if v.who == "visitor A"]
    first_served = a_visits[0].at_s + a_visits[0].stay_s
    assert a_visits[1].at_s - first_served < settings.store.deny_window_s
    assert a_visits[2].at_s - first_served > settings.store.deny_window_s
    assert script_end(script, settings) > a_visits[2].at_s + settings.store.retention_s


def test_synthetic_camera_and_vision_round_trip() -> None:
    script = _story()
    camera, vision = SyntheticCamera(script), _vision(script)
    assert vision.detect(camera.frame(0.0)) == []
    frame = camera.frame(3.0)
    faces = vision.detect(frame)
    assert len(faces) == 1 and faces[0].quality.ok and faces[0].landmarks.shape == (5, 2)
    out = np.zeros(128, np.float32)
    vision.embed(frame, faces[0], out)
    assert abs(float(np.linalg.norm(out)) - 1.0) < 1e-5
    same = np.zeros(128, np.float32)
    vision.embed(camera.frame(16.0), vision.detect(camera.frame(16.0))[0], same)
    other = np.zeros(128, np.float32)
    vision.embed(camera.frame(37.0), vision.detect(camera.frame(37.0))[0], other)
    assert float(out @ same) >= 0.93 > float(out @ other)


def test_preview_annotation_draws_box_progress_and_message() -> None:
    frame = np.zeros((120, 160, 3), np.uint8)
    image = annotate(frame, [(40.0, 20.0, 100.0, 90.0)], Message.HOLD_STILL, 0.5)
    assert image.shape == frame.shape and image.any()
    assert not frame.any()  # the camera frame itself is not drawn on


def test_preview_falls_back_to_headless_without_a_display(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    preview, note = open_preview()
    assert isinstance(preview, HeadlessPreview) and note is not None and "no display" in note
    assert preview.show(np.zeros((60, 80, 3), np.uint8), [], Message.WELCOME, None)
    assert preview.frames == 1


def test_pacer_keeps_the_running_motor_up_with_real_time() -> None:
    # MotorLink bounds a dispense in real seconds: a vision step slower than the frame
    # period must not leave the simulated motor behind real time (it timed out at ~450 mm
    # on emulated arm64). Without the motor the step stays nominal.
    clock = VirtualClock(start=1000.0)
    pacer = Pacer(clock, speed=MAX_SPEED)
    time.sleep(0.3)                                  # a slow vision step
    pacer.advance(0.05, motor_busy=False)
    assert clock.now() == pytest.approx(1000.05)
    pacer.wait()
    time.sleep(0.3)
    pacer.advance(0.05, motor_busy=True)
    moved = clock.now() - 1000.05
    assert moved >= 0.3                              # at least the real time the step took
    assert moved / 0.05 == pytest.approx(round(moved / 0.05))   # in whole frame steps


def test_pacer_lets_the_firmware_see_each_slice_while_the_motor_runs() -> None:
    """With the in-process firmware_sim, every slice of a busy step waits for a firmware
    pass at the time reached so far (so the motor stops within one slice of its target on
    a loaded host too); an idle step does not wait."""
    clock = VirtualClock(start=1000.0)

    class Firmware:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def settle(self) -> bool:
            self.seen.append(clock.now())
            return True

    firmware = Firmware()
    pacer = Pacer(clock, speed=MAX_SPEED, simulator=firmware)
    pacer.advance(0.05, motor_busy=False)
    assert firmware.seen == []
    pacer.wait()
    time.sleep(0.2)
    pacer.advance(0.05, motor_busy=True)
    slices = round((clock.now() - 1000.05) / 0.05)
    assert slices >= 4
    assert firmware.seen == pytest.approx([1000.05 + 0.05 * i for i in range(slices)])


class _NoFaces:
    """A pipeline that never finds a face (the preview test needs frames, not faces)."""

    def detect(self, frame: np.ndarray) -> list[object]:
        return []

    def close(self) -> None:
        pass


def test_the_preview_draws_every_frame_of_a_source_that_reuses_one_buffer(
        tmp_path: Path) -> None:
    """Image folders (and cameras) return the same buffer for every frame: the preview
    tells new frames by counting reads, not by the array's identity."""
    for i, level in enumerate((60, 120)):
        assert cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((120, 160, 3), level, np.uint8))
    clock = VirtualClock(0.0)
    frames = ImageDirSource(tmp_path, clock, seconds_per_image=1.0, fps=10.0)
    frames.open()
    preview = HeadlessPreview()
    run_frames(_SETTINGS, frames, _NoFaces(), clock, speed=float("inf"),
               emit=lambda row: None, preview=preview, max_s=2.0)
    assert preview.frames >= 10

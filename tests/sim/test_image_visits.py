"""`simulate --images` pacing: one visit per image, on a virtual clock, no models needed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.service.frames import FrameSourceError
from dispenser.sim.image_visits import BLANK_GREY, ImageVisits

PATIENCE_S = 8.0
GAP_S = 1.5


def _images(folder: Path, *names: str) -> Path:
    folder.mkdir(exist_ok=True)
    for k, name in enumerate(names):
        if name.endswith(".broken.png"):
            (folder / name).write_bytes(b"not an image")
        else:
            cv2.imwrite(str(folder / name), np.full((40, 60, 3), 10 + 20 * k, np.uint8))
    return folder


def _visits(spec: Path, clock: VirtualClock) -> ImageVisits:
    visits = ImageVisits(spec, clock, patience_s=PATIENCE_S, gap_s=GAP_S)
    visits.open()
    return visits


def _run(clock: VirtualClock, visits: ImageVisits, seconds: float, *, decisions: int = 0,
         busy: bool = False) -> list[np.ndarray]:
    """Step like the simulator (0.05 s), pacing after each step; the frames delivered."""
    frames = []
    for _ in range(round(seconds / 0.05)):
        frame = visits.read()
        if frame is not None:
            frames.append(frame.copy())
        visits.pace(clock.now(), decisions=decisions, busy=busy)
        clock.advance(0.05)
    return frames


def test_an_image_stays_until_its_visit_is_decided_then_a_blank_lets_the_face_leave(
        tmp_path: Path, clock: VirtualClock) -> None:
    visits = _visits(_images(tmp_path / "d", "a.png", "b.png"), clock)
    first = _run(clock, visits, 30.0, busy=True)   # a long serve: far past 5 s and patience
    assert first and all(f[0, 0, 0] == 10 for f in first)
    _run(clock, visits, 0.2, decisions=1)          # decided, machine ready: the visit ends
    gap = _run(clock, visits, GAP_S - 0.3, decisions=1)
    assert gap and all((f == BLANK_GREY).all() and f.shape == (40, 60, 3) for f in gap)
    second = _run(clock, visits, 2.0, decisions=1)[-5:]
    assert all(f[0, 0, 0] == 30 for f in second)
    assert visits.label == "image 2/2" and not visits.finished
    assert [n for _, n in visits.take_notes()] == ["a.png in front of the camera",
                                                   "b.png in front of the camera"]


def test_an_image_without_a_decision_is_skipped_after_the_patience_and_reported(
        tmp_path: Path, clock: VirtualClock) -> None:
    visits = _visits(_images(tmp_path / "d", "a.png"), clock)
    _run(clock, visits, PATIENCE_S - 0.5)
    assert not visits.skipped
    _run(clock, visits, 1.0 + GAP_S)
    assert visits.finished and visits.read() is None
    (skipped,) = visits.skipped
    assert skipped.image == "a.png" and skipped.reason.startswith("no decision in 8 s")


def test_an_unreadable_image_is_skipped_and_a_folder_with_none_readable_is_refused(
        tmp_path: Path, clock: VirtualClock) -> None:
    folder = _images(tmp_path / "d", "a.png", "b.png", "c.png")
    data = (folder / "b.png").read_bytes()
    (folder / "b.png").write_bytes(data[:len(data) // 2])   # a PNG header, cut short
    (folder / "c.broken.png").write_bytes(b"not an image")  # left out: warned, not listed
    visits = _visits(folder, clock)
    assert visits.label == "image 1/3"
    _run(clock, visits, 0.2, decisions=0)
    _run(clock, visits, 0.2, decisions=1)                   # a.png decided
    _run(clock, visits, GAP_S + 0.2, decisions=1)
    assert visits.label == "image 3/3"
    assert [s.image for s in visits.skipped] == ["b.png"]
    with pytest.raises(FrameSourceError, match=r"2 files, none a readable PNG"):
        _visits(_images(tmp_path / "e", "a.broken.png", "b.broken.png"), clock)
    with pytest.raises(FrameSourceError, match="no images"):
        _visits(_images(tmp_path / "f"), clock)
    with pytest.raises(FrameSourceError, match="does not exist"):
        _visits(tmp_path / "nowhere", clock)


def test_one_image_file_is_one_visit(tmp_path: Path, clock: VirtualClock) -> None:
    folder = _images(tmp_path / "d", "a.png", "b.broken.png")
    visits = _visits(folder / "a.png", clock)
    assert visits.label == "image 1/1"
    with pytest.raises(FrameSourceError, match=r"b\.broken\.png is not a PNG"):
        _visits(folder / "b.broken.png", clock)


def test_the_image_buffer_is_reused_and_zeroised_when_its_visit_ends(
        tmp_path: Path, clock: VirtualClock) -> None:
    visits = _visits(_images(tmp_path / "d", "a.png", "b.png"), clock)
    shown = visits.read()
    assert shown is not None
    clock.advance(0.2)
    assert visits.read() is shown                 # no copy per frame
    visits.pace(clock.now(), decisions=0, busy=False)
    visits.pace(clock.now(), decisions=1, busy=False)
    assert not shown.any()                        # the visitor left: overwritten with zeros
    visits.close()
    assert visits.finished and visits.read() is None

"""Frame sources: paced video files and image directories, clear one-line errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.service.frames import (
    CaptureSource,
    FrameSourceError,
    ImageDirSource,
    ScriptedSource,
    is_camera,
    open_source,
)


def _video(path: Path, n: int, fps: int = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for i in range(n):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path


def test_a_video_file_is_paced_on_the_clock_and_drops_late_frames(
        tmp_path: Path, clock: VirtualClock) -> None:
    source = CaptureSource(str(_video(tmp_path / "v.avi", 20)), clock)
    source.open()
    first = source.read()
    assert first is not None and first.shape == (48, 64, 3) and first.dtype == np.uint8
    assert source.read() is None              # the next frame is not due yet
    clock.advance(0.1)
    second = source.read()
    assert second is not None and abs(int(second.mean()) - 10) <= 3
    clock.advance(0.5)                        # late: frames 2-5 dropped, 6 delivered
    late = source.read()
    assert late is not None and abs(int(late.mean()) - 60) <= 3
    clock.advance(5.0)
    assert source.read() is None
    assert source.finished
    source.close()


def test_a_video_file_starts_at_the_first_read_not_at_open(
        tmp_path: Path, clock: VirtualClock) -> None:
    # Loading the models between open() and the first read must not drop the recording's
    # beginning.
    source = CaptureSource(str(_video(tmp_path / "v.avi", 20)), clock)
    source.open()
    clock.advance(30.0)
    first = source.read()
    assert first is not None and int(first.mean()) <= 3 and not source.finished
    source.close()


def test_every_frame_replays_late_frames_instead_of_dropping_them(
        tmp_path: Path, clock: VirtualClock) -> None:
    source = CaptureSource(str(_video(tmp_path / "v.avi", 20)), clock, every_frame=True)
    source.open()
    levels = []
    while not source.finished:
        frame = source.read()
        if frame is not None:
            levels.append(int(frame.mean()))
            assert source.read() is None      # never ahead of the recording's own pace
        clock.advance(0.5)                    # a CPU 5x too slow for 10 fps
    assert len(levels) == 20
    assert all(abs(level - 10 * i) <= 3 for i, level in enumerate(levels))
    source.close()


def test_an_image_directory_starts_at_the_first_read(tmp_path: Path,
                                                     clock: VirtualClock) -> None:
    for i, level in enumerate((50, 150)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((32, 32, 3), level, np.uint8))
    source = ImageDirSource(tmp_path, clock, seconds_per_image=2.0)
    source.open()
    clock.advance(10.0)
    frame = source.read()
    assert frame is not None and int(frame.mean()) == 50


def test_an_image_directory_shows_each_image_for_its_period(
        tmp_path: Path, clock: VirtualClock) -> None:
    for i, level in enumerate((50, 150)):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((32, 32, 3), level, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    source = ImageDirSource(tmp_path, clock, seconds_per_image=2.0, fps=10.0)
    source.open()
    frame = source.read()
    assert frame is not None and int(frame.mean()) == 50
    assert source.read() is None              # 10 fps
    clock.advance(2.0)
    frame = source.read()
    assert frame is not None and int(frame.mean()) == 150
    clock.advance(2.0)
    assert source.read() is None and source.finished


@pytest.mark.parametrize(("make", "error"), [
    (lambda p: CaptureSource(str(p / "missing.mp4"), VirtualClock()),
     "camera: video file not found: {p}/missing.mp4"),
    (lambda p: CaptureSource("/dev/video-nope", VirtualClock()),
     "camera: no such device /dev/video-nope (camera unplugged or wrong camera.source?)"),
    (lambda p: ImageDirSource(p / "none", VirtualClock()),
     "camera: image directory not found: {p}/none"),
    (lambda p: ImageDirSource(p, VirtualClock()),
     "camera: no images (.png, .jpg, .jpeg, .bmp) in {p}"),
])
def test_missing_sources_fail_with_one_line(tmp_path: Path, make: object, error: str) -> None:
    source = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(FrameSourceError) as caught:
        source.open()
    assert str(caught.value) == error.format(p=tmp_path)


def test_an_unreadable_image_is_one_line(tmp_path: Path, clock: VirtualClock) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    source = ImageDirSource(tmp_path, clock)
    source.open()
    with pytest.raises(FrameSourceError, match=r"^camera: cannot read image .*broken.png"):
        source.read()


def test_grey_frames_become_bgr(tmp_path: Path, clock: VirtualClock) -> None:
    cv2.imwrite(str(tmp_path / "g.png"), np.full((20, 30), 99, np.uint8))
    source = ImageDirSource(tmp_path, clock)
    source.open()
    frame = source.read()
    assert frame is not None and frame.shape == (20, 30, 3)


def test_open_source_picks_the_kind(tmp_path: Path, clock: VirtualClock) -> None:
    assert is_camera("0") and is_camera("/dev/video2") and not is_camera("a.mp4")
    assert isinstance(open_source(str(tmp_path), clock), ImageDirSource)
    assert isinstance(open_source("0", clock), CaptureSource)
    assert open_source("clip.mp4", clock).name == "video file clip.mp4"
    assert open_source("0", clock).name == "camera 0"


def test_scripted_source_unplug_and_bounded_queue() -> None:
    source = ScriptedSource(max_pending=3)
    source.open()
    for i in range(5):
        source.push(np.full((20, 20, 3), i, np.uint8))
    frame = source.read()
    assert frame is not None and frame[0, 0, 0] == 2       # the oldest two were dropped
    source.unplug()
    with pytest.raises(FrameSourceError):
        source.read()
    with pytest.raises(FrameSourceError):
        source.open()
    source.replug()
    source.open()
    assert source.read() is None
    source.end()
    assert source.finished


def test_video_frames_reuse_one_buffer_that_close_zeroises(tmp_path: Path) -> None:
    """At most one decoded camera frame lives in our memory, and close() wipes it."""
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 + 40 * i, np.uint8))
    writer.release()
    clock = VirtualClock(0.0)
    source = CaptureSource(str(path), clock)
    source.open()
    first = source.read()
    clock.advance(0.1)
    second = source.read()
    assert first is not None and second is first  # same buffer, overwritten
    assert second.any()
    source.close()
    assert not first.any()

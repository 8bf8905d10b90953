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
     "camera: no images (.png, .jpg, .jpeg, .tif, .tiff, .bmp, .webp, .pbm, .pgm, .ppm, "
     ".pnm) in {p}"),
])
def test_missing_sources_fail_with_one_line(tmp_path: Path, make: object, error: str) -> None:
    source = make(tmp_path)  # type: ignore[operator]
    with pytest.raises(FrameSourceError) as caught:
        source.open()
    assert str(caught.value) == error.format(p=tmp_path)


def _png(path: Path, level: int, shape: tuple[int, ...] = (32, 32, 3)) -> Path:
    assert cv2.imwrite(str(path), np.full(shape, level, np.uint8))
    return path


def test_unreadable_images_are_skipped_with_one_warning_each(
        tmp_path: Path, clock: VirtualClock, caplog: pytest.LogCaptureFixture) -> None:
    """An empty file, a non-image and a truncated image (good header, bad data) are each
    skipped once with one warning; the readable images are shown in turn; no read raises
    (a raise made the service re-open the folder and fail again, forever)."""
    (tmp_path / "a_empty.png").write_bytes(b"")
    _png(tmp_path / "b.png", 50)
    (tmp_path / "c_text.jpg").write_text("not an image", encoding="utf-8")
    whole = _png(tmp_path / "d.png", 100, (64, 64, 3)).read_bytes()
    (tmp_path / "d.png").unlink()
    (tmp_path / "d_cut.png").write_bytes(whole[:60])
    _png(tmp_path / "e.png", 150)
    source = ImageDirSource(tmp_path, clock, seconds_per_image=2.0, fps=10.0)
    with caplog.at_level("WARNING", logger="dispenser.frames"):
        source.open()
        shown = []
        for _ in range(100):
            frame = source.read()
            if frame is not None:
                shown.append(int(frame.mean()))
            clock.advance(0.5)
    assert source.finished
    assert sorted(set(shown)) == [50, 150]
    skipped = [r.getMessage() for r in caplog.records]
    assert len(skipped) == 3 and all(m.startswith("image_skipped file=") for m in skipped)
    for name in ("a_empty.png", "c_text.jpg", "d_cut.png"):
        assert sum(name in m for m in skipped) == 1, name


def test_a_folder_with_no_readable_image_refuses_to_open(tmp_path: Path,
                                                         clock: VirtualClock) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8 nope")
    source = ImageDirSource(tmp_path, clock)
    with pytest.raises(FrameSourceError) as caught:
        source.open()
    assert str(caught.value) == (f"camera: 2 files, none a readable PNG, JPEG, TIFF, BMP, "
                                 f"WebP or PNM image in {tmp_path}")


def test_an_image_folder_bomb_is_skipped_before_decoding(
        tmp_path: Path, clock: VirtualClock, caplog: pytest.LogCaptureFixture) -> None:
    """`run --source DIR` and `simulate --images DIR` read through the one loader: a PNG
    that claims 20000x20000 pixels is skipped on its header."""
    header = cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))[1].tobytes()
    (tmp_path / "a_bomb.png").write_bytes(header[:16] + (20000).to_bytes(4, "big") * 2
                                          + header[24:])
    _png(tmp_path / "b.png", 77)
    source = ImageDirSource(tmp_path, clock)
    with caplog.at_level("WARNING", logger="dispenser.frames"):
        source.open()
    frame = source.read()
    assert frame is not None and int(frame.mean()) == 77
    assert "20000x20000 pixels" in caplog.text


def test_image_frames_live_in_two_locked_buffers_zeroised_on_change_and_close(
        tmp_path: Path, clock: VirtualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """No per-frame copy: every read refills and returns the same swap-locked buffer; the
    previous image's buffer is zeroised when the next image replaces it; close() zeroises
    what is left."""
    from dispenser.service import frames

    locked: list[np.ndarray] = []
    monkeypatch.setattr(frames, "lock_pages", lambda b: locked.append(b) or True)
    _png(tmp_path / "a.png", 60)
    _png(tmp_path / "b.png", 90, (48, 40, 3))
    source = ImageDirSource(tmp_path, clock, seconds_per_image=1.0, fps=10.0)
    source.open()
    first = source.read()
    clock.advance(0.2)
    again = source.read()
    assert first is not None and again is first and int(first.mean()) == 60
    assert len(locked) == 2 and any(b is first for b in locked)
    first_image = next(b for b in locked if b is not first)
    clock.advance(1.0)
    second = source.read()
    assert second is not None and second.shape == (48, 40, 3) and int(second.mean()) == 90
    assert not first.any() and not first_image.any()      # the old size's buffers wiped
    source.close()
    assert all(not b.any() for b in locked)


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

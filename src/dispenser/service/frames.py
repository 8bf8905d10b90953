"""Where camera frames come from: a camera, a V4L2 device, a video file, an image
directory, or a script (tests and the simulator).

Every source follows `FrameSource`: `open()` raises `FrameSourceError` with one line naming
the device or file; `read()` returns a BGR uint8 frame, or None when no new frame is due
yet (a paced file, a camera between frames), and raises `FrameSourceError` when the device
is gone (unplugged), so the service can show "Temporarily unavailable" and retry with
back-off. `finished` is True once a finite source (file, directory, script) has nothing
more to give; a camera never finishes.

Files and directories are paced on the injected clock like a live camera (frames are due
at their timestamps, late frames are dropped), so a 3 s hold-still in a video takes 3 s of
clock time on the board and 3 s of *virtual* time in the simulator. Their time starts at the
first `read()`, not at `open()`, so the service's start-up (loading the models, greeting the
controller) does not eat the beginning of a recording. A video file opened with
`every_frame=True` (replaying recorded footage, `dispenser run --every-frame`) never drops a
frame: when the CPU cannot keep up, playback falls behind the recording instead, so every
frame is analysed however slow the board.
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dispenser.clock import Clock
from dispenser.errors import EXIT_FAILURE, EXIT_USAGE, DispenserError
from dispenser.logsafe import event
from dispenser.privacy.memory import lock_pages, unlock_pages, zeroise

_DEFAULT_FILE_FPS = 25.0
_log = logging.getLogger("dispenser.frames")


class FrameSourceError(DispenserError):
    """The camera or file cannot deliver frames (one line naming it)."""

    exit_code = EXIT_FAILURE


class FrameSource(Protocol):
    """A stream of BGR uint8 frames (HxWx3)."""

    @property
    def name(self) -> str:
        """What this source is, for logs and errors (a device or file name, never data)."""
        ...

    @property
    def finished(self) -> bool:
        """True once a finite source has delivered its last frame."""
        ...

    def open(self) -> None:
        """Open (or re-open after a loss); raise FrameSourceError if impossible."""
        ...

    def read(self) -> np.ndarray | None:
        """The next frame, None if none is due yet; FrameSourceError if the device is gone."""
        ...

    def close(self) -> None:
        ...


def _cv2() -> Any:
    import cv2  # heavy import kept out of module import time (CLI start-up)

    # OpenCV's own stderr warnings ("can't open camera by index") would repeat on every
    # re-open attempt; the service logs one line of its own instead.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


class CaptureSource:
    """cv2.VideoCapture over a camera index, a V4L2 device path or a video file.

    Frames are decoded into one preallocated buffer, locked against swap, that every read
    overwrites and `close()` zeroises: at most one camera frame exists in our memory at a
    time (OpenCV's decoder keeps its own internal buffers, which we cannot reach; see
    docs/privacy.md). The frame returned by `read()` is valid until the next `read()`.
    """

    def __init__(self, spec: str, clock: Clock, *, width: int = 640, height: int = 480,
                 every_frame: bool = False) -> None:
        self._spec = spec
        self._clock = clock
        self._size = (width, height)
        self._is_file = not is_camera(spec)
        self._every_frame = every_frame
        self._cap: Any = None
        self._finished = False
        self._t0: float | None = None  # clock time of the file's first frame (first read)
        self._fps = _DEFAULT_FILE_FPS
        self._index = 0          # next file frame index to deliver
        self._frame: np.ndarray | None = None  # the one reused, swap-locked frame buffer

    @property
    def name(self) -> str:
        if self._spec.isdigit():
            return f"camera {self._spec}"
        return f"video file {self._spec}" if self._is_file else f"camera {self._spec}"

    @property
    def finished(self) -> bool:
        return self._finished

    def open(self) -> None:
        cv2 = _cv2()
        self.close()
        if self._is_file:
            path = Path(self._spec)
            if not path.is_file():
                raise FrameSourceError(f"camera: video file not found: {path}")
            cap = cv2.VideoCapture(str(path))
        elif self._spec.isdigit():
            cap = cv2.VideoCapture(int(self._spec), cv2.CAP_V4L2)
        else:
            if not Path(self._spec).exists():
                raise FrameSourceError(f"camera: no such device {self._spec} "
                                       "(camera unplugged or wrong camera.source?)")
            cap = cv2.VideoCapture(self._spec, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            what = "cannot decode" if self._is_file else "cannot open"
            raise FrameSourceError(f"camera: {what} {self.name}")
        if self._is_file:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self._fps = fps if 1.0 <= fps <= 240.0 else _DEFAULT_FILE_FPS
            self._t0, self._index = None, 0
        else:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._size[1])
        self._cap = cap
        self._finished = False

    def read(self) -> np.ndarray | None:
        if self._cap is None or self._finished:
            return None
        if self._is_file:
            return self._read_paced()
        frame = self._decode()
        if frame is None:
            raise FrameSourceError(f"camera: {self.name} stopped delivering frames "
                                   "(unplugged?)")
        return _as_bgr(frame)

    def _read_paced(self) -> np.ndarray | None:
        now = self._clock.now()
        if self._t0 is None:
            self._t0 = now
        due = int((now - self._t0) * self._fps)  # index of the frame due now
        if due < self._index:
            return None
        if self._every_frame:       # late: deliver the next frame anyway, playback lags
            self._t0 += (due - self._index) / self._fps
            due = self._index
        # Drop frames we are late for, as a live camera would.
        while self._index < due:
            if not self._cap.grab():
                self._finished = True
                return None
            self._index += 1
        frame = self._decode()
        self._index += 1
        if frame is None:
            self._finished = True
            return None
        return _as_bgr(frame)

    def _decode(self) -> np.ndarray | None:
        """Decode the next frame into the reused buffer (adopting a new one, and zeroising
        the old, only when the frame size changes)."""
        ok, frame = self._cap.read(self._frame)
        if not ok or not isinstance(frame, np.ndarray):
            return None
        if frame is not self._frame:
            self._release_frame()
            lock_pages(frame)
            self._frame = frame
        return frame

    def _release_frame(self) -> None:
        if self._frame is not None:
            zeroise(self._frame)
            unlock_pages(self._frame)
            self._frame = None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._release_frame()


class ImageDirSource:
    """Each image of a directory (sorted by name) shown as a still scene for
    `seconds_per_image`, delivered at `fps` frames per second of clock time.

    Images are read with the one image loader (`vision.images.load_image_bgr`: pixel limit
    checked on the header before decoding). `open()` checks every file's header and skips
    (one warning each) the ones that are not readable images; with none left it refuses.
    An image that passes the header check but fails to decode is skipped the same way when
    its turn comes, and the next image takes its place: a bad file never stops the source.

    Frames live in two swap-locked buffers, as a camera's do: the current image (kept for
    its period, zeroised when the next image replaces it) and the frame buffer every
    `read()` refills from it and returns (valid until the next `read()`). `close()`
    zeroises both. No per-frame copy is made.
    """

    def __init__(self, directory: str | Path, clock: Clock, *,
                 seconds_per_image: float = 5.0, fps: float = 10.0) -> None:
        self._dir = Path(directory)
        self._clock = clock
        self._period = seconds_per_image
        self._frame_dt = 1.0 / fps
        self._paths: list[Path] = []
        self._t0: float | None = None  # clock time of the first image (first read)
        self._last_t: float | None = None
        self._shown = -1                          # index of the image in `_image`
        self._image: np.ndarray | None = None     # the current image, swap-locked
        self._frame: np.ndarray | None = None     # what read() returns, swap-locked
        self._finished = False

    @property
    def name(self) -> str:
        return f"image directory {self._dir}"

    @property
    def finished(self) -> bool:
        return self._finished

    def open(self) -> None:
        if not self._dir.is_dir():
            raise FrameSourceError(f"camera: image directory not found: {self._dir}")
        self.close()
        self._paths = list_images(self._dir)
        self._t0, self._last_t, self._finished = None, None, False

    def read(self) -> np.ndarray | None:
        if self._finished or not self._paths:
            return None
        now = self._clock.now()
        if self._t0 is None:
            self._t0 = now
        if self._last_t is not None and now - self._last_t < self._frame_dt:
            return None
        k = int((now - self._t0) / self._period)
        while k < len(self._paths) and k != self._shown and not self._load(k):
            del self._paths[k]          # skipped: the next image takes its turn
        if k >= len(self._paths):
            self._finished = True
            return None
        self._last_t = now
        assert self._image is not None and self._frame is not None
        np.copyto(self._frame, self._image)
        return self._frame

    def _load(self, k: int) -> bool:
        """Decode image k into the locked buffers; False (one warning) if it cannot be."""
        from dispenser.vision.images import load_image_bgr

        path = self._paths[k]
        try:
            decoded = load_image_bgr(path)
        except DispenserError as exc:
            _skip_warning(path, str(exc))
            return False
        try:
            self._image = _refill(self._image, decoded)
        finally:
            zeroise(decoded)
        self._frame = _refill(self._frame, self._image)
        self._shown = k
        return True

    def close(self) -> None:
        for buffer in (self._image, self._frame):
            if buffer is not None:
                zeroise(buffer)
                unlock_pages(buffer)
        self._image = self._frame = None
        self._shown = -1


def list_images(directory: Path) -> list[Path]:
    """The images in `directory`, sorted by name, whose header the loader accepts; one
    warning for each file skipped, FrameSourceError naming the folder if none is left.
    (`run --source DIR` and `simulate --images DIR` both start from this list.)"""
    from dispenser.vision.images import IMAGE_FORMATS, IMAGE_SUFFIXES

    candidates = sorted(p for p in directory.iterdir()
                        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    paths = [p for p in candidates if _readable_header(p)]
    if not paths:
        files = f"{len(candidates)} file" + ("s" if len(candidates) > 1 else "")
        found = (f"{files}, none a readable {IMAGE_FORMATS} image"
                 if candidates else f"no images ({', '.join(IMAGE_SUFFIXES)})")
        raise FrameSourceError(f"camera: {found} in {directory}")
    return paths


def _readable_header(path: Path) -> bool:
    """True if `path` starts like an image the loader will decode (one warning if not)."""
    from dispenser.vision.images import check_image_header

    try:
        check_image_header(path)
    except DispenserError as exc:
        _skip_warning(path, str(exc))
        return False
    return True


def _skip_warning(path: Path, error: str) -> None:
    event(_log, "image_skipped", logging.WARNING, file=repr(str(path)), error=repr(error))


def _refill(buffer: np.ndarray | None, content: np.ndarray) -> np.ndarray:
    """`content` copied into `buffer`, or into a new swap-locked buffer (the old one zeroised
    and unlocked) when the shape differs."""
    if buffer is None or buffer.shape != content.shape:
        if buffer is not None:
            zeroise(buffer)
            unlock_pages(buffer)
        buffer = np.empty_like(content)
        lock_pages(buffer)
    np.copyto(buffer, content)
    return buffer


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    """Grey frames from some V4L2 cameras become 3-channel so the pipeline sees BGR."""
    if frame.ndim == 2:
        return np.ascontiguousarray(np.repeat(frame[:, :, None], 3, axis=2))
    return frame


class ScriptedSource:
    """Frames pushed by a test or the simulator; can be told to fail like an unplugged
    camera. Bounded: at most `max_pending` frames wait (the oldest are dropped, as a camera
    driver's ring buffer would)."""

    def __init__(self, name: str = "scripted frames", max_pending: int = 64) -> None:
        self._name = name
        self._pending: collections.deque[np.ndarray] = collections.deque(maxlen=max_pending)
        self._ended = False
        self._unplugged = False
        self.opens = 0

    @property
    def name(self) -> str:
        return self._name

    @property
    def finished(self) -> bool:
        return self._ended and not self._pending

    def push(self, frame: np.ndarray) -> None:
        """Queue a frame; while unplugged it is lost, as a camera's would be."""
        if not self._unplugged:
            self._pending.append(frame)

    def end(self) -> None:
        """No more frames will come (the script is over)."""
        self._ended = True

    def unplug(self) -> None:
        """Reads and opens fail until `replug()`."""
        self._unplugged = True
        self._pending.clear()

    def replug(self) -> None:
        self._unplugged = False

    def open(self) -> None:
        if self._unplugged:
            raise FrameSourceError(f"camera: cannot open {self._name}")
        if self.opens:
            self._pending.clear()       # a re-opened camera starts with fresh frames
        self.opens += 1

    def read(self) -> np.ndarray | None:
        if self._unplugged:
            raise FrameSourceError(f"camera: {self._name} stopped delivering frames "
                                   "(unplugged?)")
        return self._pending.popleft() if self._pending else None

    def close(self) -> None:
        self._pending.clear()


def is_camera(spec: str) -> bool:
    """A camera index ("0") or a device path ("/dev/video0"): may be missing now and appear
    later, unlike a file."""
    return spec.isdigit() or spec.startswith("/dev/")


def open_source(spec: str, clock: Clock, *, width: int = 640, height: int = 480,
                every_frame: bool = False) -> FrameSource:
    """The source `spec` names (not yet opened): a digit is a camera index, a /dev path a
    V4L2 device, a directory a set of still images, anything else a video file.
    `every_frame` applies to a video file only (see the module docstring)."""
    if not is_camera(spec) and Path(spec).is_dir():
        return ImageDirSource(spec, clock)
    return CaptureSource(spec, clock, width=width, height=height,
                         every_frame=every_frame)


def open_at_start(frames: FrameSource) -> None:
    """Open a file or folder source when a command starts: one that is missing or cannot be
    read is bad input (exit 2, docs/operator.md), unlike a camera failing later on."""
    try:
        frames.open()
    except FrameSourceError as exc:
        raise DispenserError(str(exc), exit_code=EXIT_USAGE) from None

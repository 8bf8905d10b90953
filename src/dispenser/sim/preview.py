"""The simulator's preview: the camera frame with the face boxes, the hold-still progress
and the message the person would read.

Two backends: `WindowPreview` shows it in an OpenCV window (needs a display and an OpenCV
build with GUI support: `opencv-python`, not the headless wheel the package depends on);
`HeadlessPreview` draws the same picture off-screen and keeps only the count, so the code
path runs (and is tested) on machines without a display. The annotated frame lives in RAM
only and is dropped after drawing: nothing is written to disk.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Protocol

import numpy as np

from dispenser.service import Message
from dispenser.service.messages import render

_GREEN = (60, 200, 60)
_AMBER = (0, 170, 255)
_WHITE = (255, 255, 255)
WINDOW_TITLE = "dispenser simulate (q to stop)"


def _cv2() -> Any:
    import cv2

    return cv2


def annotate(frame_bgr: np.ndarray, boxes: list[tuple[float, float, float, float]],
             message: Message, progress: float | None) -> np.ndarray:
    """A copy of the frame with the face boxes, a progress bar and the message (English:
    OpenCV's built-in font has no CJK glyphs)."""
    cv2 = _cv2()
    image = frame_bgr.copy()
    h, w = image.shape[:2]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        colour = _GREEN if i == 0 else _AMBER
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), colour, 2)
    if progress is not None:
        filled = int((w - 20) * min(max(progress, 0.0), 1.0))
        cv2.rectangle(image, (10, h - 40), (w - 10, h - 28), _WHITE, 1)
        cv2.rectangle(image, (10, h - 40), (10 + filled, h - 28), _GREEN, -1)
    cv2.rectangle(image, (0, h - 24), (w, h), (0, 0, 0), -1)
    text = render(message, "en", progress)
    scale = min(0.5, 0.5 * w / max(1, 9 * len(text)))
    cv2.putText(image, text, (8, h - 8), cv2.FONT_HERSHEY_SIMPLEX, max(scale, 0.3), _WHITE,
                1, cv2.LINE_AA)
    return image


class Preview(Protocol):
    """Where annotated frames go."""

    name: str

    def show(self, frame_bgr: np.ndarray, boxes: list[tuple[float, float, float, float]],
             message: Message, progress: float | None) -> bool:
        """Draw one frame; False if the person asked to stop (closed the window, 'q')."""
        ...

    def close(self) -> None:
        ...


class HeadlessPreview:
    """Draws every preview frame off-screen (no display needed) and drops it."""

    name = "headless"

    def __init__(self) -> None:
        self.frames = 0
        self.last_shape: tuple[int, ...] | None = None

    def show(self, frame_bgr: np.ndarray, boxes: list[tuple[float, float, float, float]],
             message: Message, progress: float | None) -> bool:
        image = annotate(frame_bgr, boxes, message, progress)
        self.frames += 1
        self.last_shape = image.shape
        image.fill(0)
        return True

    def close(self) -> None:
        self.last_shape = None


class WindowPreview:
    """An OpenCV window; 'q' or Esc stops the run."""

    name = "window"

    def __init__(self) -> None:
        _cv2().namedWindow(WINDOW_TITLE)

    def show(self, frame_bgr: np.ndarray, boxes: list[tuple[float, float, float, float]],
             message: Message, progress: float | None) -> bool:
        cv2 = _cv2()
        image = annotate(frame_bgr, boxes, message, progress)
        cv2.imshow(WINDOW_TITLE, image)
        image.fill(0)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        _cv2().destroyWindow(WINDOW_TITLE)


def display_available() -> bool:
    """A desktop session this process could open a window on."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_preview() -> tuple[Preview, str | None]:
    """A window if a display and a GUI-capable OpenCV exist, else the headless backend and
    a one-line note saying why."""
    if not display_available():
        return HeadlessPreview(), "no display: the preview is drawn off-screen only"
    cv2 = _cv2()
    try:
        return WindowPreview(), None
    except cv2.error:
        return HeadlessPreview(), ("this OpenCV has no window support (opencv-python-headless);"
                                   " see README 'OpenCV and preview windows'")

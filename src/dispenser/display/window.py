"""An OpenCV window: the screen on a desktop (`display.kind = "window"`).

Needs an OpenCV build with GUI support (`opencv-python`, not the headless wheel the
package depends on: README "OpenCV and preview windows") and a desktop session. Without
either, opening fails with one line and the service falls back to the terminal display.
The window shows the picture as the panel would; OpenCV's GUI keeps its own copy of what
it shows, as any screen does. The window is created by the first `write()`, on the
drawing thread: OpenCV's Qt backend shows images only for the thread that made its window
(an `imshow` from another thread is dropped with "No such method GuiReceiver::showImage").
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from dispenser.display.framebuffer import DisplayDeviceError
from dispenser.display.layout import Rect

WINDOW_TITLE = "dispenser"


def _cv2() -> Any:
    import cv2

    return cv2


class WindowSink:
    def __init__(self, size: tuple[int, int]) -> None:
        from dispenser.sim.preview import display_available

        if not display_available():
            raise DisplayDeviceError("display: no desktop session (DISPLAY or "
                                     "WAYLAND_DISPLAY unset) for display.kind = window")
        if not gui_available():
            raise DisplayDeviceError("display: this OpenCV has no window support "
                                     "(opencv-python-headless); see README 'OpenCV and "
                                     "preview windows'")
        self.size = size
        self._opened = False

    @property
    def name(self) -> str:
        return f"window {self.size[0]}x{self.size[1]}"

    def write(self, canvas: np.ndarray, rects: list[Rect]) -> None:
        cv2 = _cv2()
        if not self._opened:
            cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_AUTOSIZE)
            self._opened = True
        cv2.imshow(WINDOW_TITLE, canvas)
        cv2.waitKey(1)

    def close(self) -> None:
        if self._opened:
            with contextlib.suppress(Exception):   # the user may have closed it already
                _cv2().destroyWindow(WINDOW_TITLE)


def gui_available() -> bool:
    """This OpenCV was built with a GUI backend (not the headless wheel)."""
    for line in _cv2().getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key == "GUI":
            return value.strip().upper() not in ("", "NONE")
    return False

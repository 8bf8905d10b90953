"""display.kind = "window": an OpenCV window where a desktop and a GUI build exist; with
the headless OpenCV the package depends on, or no desktop, one line and the terminal."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.config import DisplaySettings
from dispenser.display import window
from dispenser.display.layout import Rect
from dispenser.display.open import open_display
from dispenser.service.messages import TerminalDisplay


def _opened(caplog: pytest.LogCaptureFixture) -> tuple[Any, list[str]]:
    with caplog.at_level(logging.WARNING, logger="dispenser.display"):
        display, close = open_display(DisplaySettings(kind="window", font="bundled"),
                                      VirtualClock())
    close()
    return display, [r.getMessage() for r in caplog.records]


def test_no_desktop_means_the_terminal(monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    display, lines = _opened(caplog)
    assert isinstance(display, TerminalDisplay)
    assert lines == ["screen_unavailable error='display: no desktop session (DISPLAY or "
                     "WAYLAND_DISPLAY unset) for display.kind = window' using=terminal"]


def test_a_headless_opencv_means_the_terminal(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    import cv2

    monkeypatch.setenv("DISPLAY", ":99")

    def no_gui(*args: object) -> None:
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(window, "_cv2", lambda: SimpleNamespace(
        namedWindow=no_gui, WINDOW_AUTOSIZE=1, error=cv2.error))
    display, lines = _opened(caplog)
    assert isinstance(display, TerminalDisplay)
    assert lines == ['screen_unavailable error="display: this OpenCV has no window support '
                     "(opencv-python-headless); see README 'OpenCV and preview windows'\" "
                     "using=terminal"]


def test_the_window_shows_the_canvas(monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[np.ndarray] = []
    events: list[str] = []
    fake = SimpleNamespace(
        WINDOW_AUTOSIZE=1, error=Exception,
        namedWindow=lambda name, flags: events.append(f"open {name}"),
        imshow=lambda name, image: shown.append(image.copy()),
        waitKey=lambda ms: -1,
        destroyWindow=lambda name: events.append(f"close {name}"))
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(window, "_cv2", lambda: fake)
    sink = window.WindowSink((320, 240))
    canvas = np.full((240, 320, 3), 7, np.uint8)
    sink.write(canvas, [Rect(0, 0, 320, 240)])
    sink.close()
    assert events == ["open dispenser", "close dispenser"]
    assert len(shown) == 1 and np.array_equal(shown[0], canvas)
    assert sink.name == "window 320x240"

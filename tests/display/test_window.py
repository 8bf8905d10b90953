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
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(window, "_cv2", lambda: SimpleNamespace(
        getBuildInformation=lambda: "  Media I/O:\n  GUI:                           NONE\n"))
    display, lines = _opened(caplog)
    assert isinstance(display, TerminalDisplay)
    assert lines == ['screen_unavailable error="display: this OpenCV has no window support '
                     "(opencv-python-headless); see README 'OpenCV and preview windows'\" "
                     "using=terminal"]


def test_the_installed_opencv_is_headless() -> None:
    """The package depends on opencv-python-headless: the check must say so."""
    assert window.gui_available() is False


def test_the_window_is_made_and_shown_by_the_drawing_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Created by the first write (OpenCV's Qt windows accept images only from the thread
    that made them), then every write shows the canvas."""
    import threading

    shown: list[np.ndarray] = []
    events: list[str] = []
    fake = SimpleNamespace(
        WINDOW_AUTOSIZE=1, getBuildInformation=lambda: "  GUI:    QT5\n",
        namedWindow=lambda name, flags: events.append(
            f"open {name} in {threading.current_thread().name}"),
        imshow=lambda name, image: shown.append(image.copy()),
        waitKey=lambda ms: -1,
        destroyWindow=lambda name: events.append(f"close {name}"))
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(window, "_cv2", lambda: fake)
    sink = window.WindowSink((320, 240))
    assert events == []
    canvas = np.full((240, 320, 3), 7, np.uint8)
    drawer = threading.Thread(target=sink.write, args=(canvas, [Rect(0, 0, 320, 240)]),
                              name="screen")
    drawer.start()
    drawer.join()
    sink.write(canvas, [Rect(0, 0, 320, 240)])
    sink.close()
    assert events == ["open dispenser in screen", "close dispenser"]
    assert len(shown) == 2 and np.array_equal(shown[0], canvas)
    assert sink.name == "window 320x240"

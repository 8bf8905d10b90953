"""The whole visit on a (test) framebuffer: welcome, the hold-still ring filling, "here you
go", then "try later" for the same face; the real vision pipeline, store and service, the
screen's own drawing thread and the framebuffer sink, a panel that is a plain file.
(`dispenser run --source VIDEO` on a framebuffer: tests/service/test_service_run_command.py.)"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from panel_doubles import FakePanel, read_panel

from dispenser.clock import VirtualClock
from dispenser.config import Settings, VisionSettings
from dispenser.display import screens
from dispenser.display.fonts import FontFile
from dispenser.display.framebuffer import FramebufferSink
from dispenser.display.layout import Layout, Rect
from dispenser.display.painter import Painter
from dispenser.display.screen import ScreenDisplay
from dispenser.service import DispenserService
from dispenser.service.frames import ScriptedSource
from dispenser.service.messages import Message
from dispenser.store import TemplateStore
from dispenser.store.rule import rule_for
from dispenser.vision import FacePipeline, FaceTracker

FPS = 10
WAIT_S = 10.0
W, H = 800, 480


@pytest.fixture(scope="module")
def pipeline() -> Iterator[FacePipeline]:
    with FacePipeline(VisionSettings(threads=2)) as pipe:
        yield pipe


class InstantMotor:
    """Every ribbon goes out at once; a controller that is always ready."""

    def dispense(self, length_mm: int) -> Any:
        return SimpleNamespace(ok=True, dispensed_mm=length_mm, error=None)

    def state(self) -> Any:
        return SimpleNamespace(name="READY")

    def button_presses(self) -> int:
        return 0


def _scene(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    empty = np.full((480, 640, 3), 90, np.uint8)
    face = empty.copy()
    face[:, 64:576] = cv2.imread(str(data_dir / "astronaut.png"))[16:496]
    return empty, face


class WatchedPanel(FramebufferSink):
    """The framebuffer sink, naming what the panel file shows after every write."""

    def __init__(self, device: Path, sysfs: Path, names: dict[bytes, str],
                 layout: Layout) -> None:
        super().__init__(device, sysfs)
        self.seen: list[str] = []
        self._names = names
        self._layout = layout

    def write(self, canvas: np.ndarray, rects: list[Rect]) -> None:
        super().write(canvas, rects)
        shown = read_panel(self.device, W, H, 32, W * 4)
        name = _what_is_shown(shown, self._names, self._layout)
        if not self.seen or self.seen[-1] != name:
            self.seen.append(name)


def _text_area(picture: np.ndarray, layout: Layout) -> bytes:
    t = layout.text
    return picture[t.y:t.bottom, t.x:t.right].tobytes()


def _what_is_shown(shown: np.ndarray, names: dict[bytes, str], layout: Layout) -> str:
    """The message whose text panel the panel shows; the hold-still ring by its colour."""
    o = layout.oval
    a = math.radians(30 - 90)                  # 30 degrees clockwise from the top
    ring = tuple(shown[round(o.cy + o.ry * math.sin(a)), round(o.cx + o.rx * math.cos(a))])
    if ring == screens.RING_FILL:
        return "hold_still_ring"
    return names.get(_text_area(shown, layout), "other")


def _text_panels(font: FontFile) -> dict[bytes, str]:
    names = {}
    for message in (Message.WELCOME, Message.HERE_YOU_GO, Message.TRY_LATER,
                    Message.DISPENSING, Message.UNAVAILABLE):
        painter = Painter(W, H, font, "zh+en")
        painter.paint(message)
        names[_text_area(painter.canvas[:, :, ::-1], painter.layout)] = message.value
        painter.close()
    return names


def test_a_visit_and_a_return_on_a_framebuffer(
        pipeline: FacePipeline, fake_panel: FakePanel, font: FontFile,
        data_dir: Path) -> None:
    device, sysfs = fake_panel(W, H, 32)
    empty, face = _scene(data_dir)
    clock = VirtualClock(1000.0)
    settings = Settings()
    source = ScriptedSource()
    painter = Painter(W, H, font, "zh+en")
    panel = WatchedPanel(device, sysfs, _text_panels(font), painter.layout)
    screen = ScreenDisplay(painter, panel, clock, max_fps=30.0)
    with TemplateStore(settings.store, rule=rule_for(settings), clock=clock,
                       start_sweeper=False, zeroise_on_signals=False) as store:
        svc = DispenserService(settings, clock=clock, frames=source, store=store,
                               pipeline=pipeline, motor=InstantMotor(), display=screen,
                               tracker=FaceTracker(clock))

        def show(frame: np.ndarray, seconds: float) -> None:
            for _ in range(round(seconds * FPS)):
                source.push(frame)
                svc.step()
                if svc.motor_busy:
                    assert svc.wait_motor(WAIT_S)
                clock.advance(1.0 / FPS)
                assert screen.flush(WAIT_S)

        try:
            show(empty, 1.0)
            show(face, 4.5)
            show(empty, 6.0)
            show(face, 4.5)
        finally:
            svc.close()
            screen.close()
    seen = panel.seen
    assert seen[0] == "welcome"
    expected = ["welcome", "hold_still_ring", "here_you_go", "welcome", "hold_still_ring",
                "try_later", "unavailable"]
    it = iter(seen)
    assert all(state in it for state in expected), seen

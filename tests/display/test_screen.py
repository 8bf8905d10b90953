"""The drawing thread behind a one-slot mailbox: `show()` never waits for the panel, the
newest state wins, only what changed is redrawn, a failing panel stops drawing but not
the service, and closing leaves no camera picture anywhere."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.display.demo import silhouette_frame
from dispenser.display.fonts import FontFile
from dispenser.display.layout import Rect
from dispenser.display.painter import Painter
from dispenser.display.screen import ScreenDisplay
from dispenser.service.messages import Message, RecordingDisplay

WAIT_S = 10.0          # real-time bound on waiting for the drawing thread (never reached)


class SlowSink:
    """Records every write; blocks each write until `gate` is set."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self.name = "test sink"
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.writes: list[list[Rect]] = []
        self.fail: Exception | None = None
        self.closed = False
        self.threads: set[str] = set()

    def write(self, canvas: np.ndarray, rects: list[Rect]) -> None:
        self.threads.add(threading.current_thread().name)
        self.entered.set()
        assert self.gate.wait(WAIT_S)
        if self.fail is not None:
            raise self.fail
        self.writes.append(list(rects))

    def close(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.closed = True


def _screen(font: FontFile, clock: VirtualClock, *, preview: bool = True,
            echo: RecordingDisplay | None = None) -> tuple[ScreenDisplay, SlowSink]:
    sink = SlowSink((320, 240))
    painter = Painter(320, 240, font, "zh+en", preview=preview)
    return ScreenDisplay(painter, sink, clock, max_fps=10.0, echo=echo), sink


def test_show_never_waits_for_the_panel_and_the_newest_state_wins(font: FontFile) -> None:
    clock = VirtualClock()
    echo = RecordingDisplay()
    screen, sink = _screen(font, clock, echo=echo)
    try:
        sink.gate.clear()                      # the panel hangs
        screen.show(Message.WELCOME)
        assert sink.entered.wait(WAIT_S)
        for p in (0.1, 0.2, 0.3, 0.4):         # returns at once although nothing draws
            screen.show(Message.HOLD_STILL, p)
        screen.show(Message.HERE_YOU_GO)
        assert echo.shown == [Message.WELCOME, Message.HOLD_STILL, Message.HERE_YOU_GO]
        sink.gate.set()
        clock.advance(1.0)
        assert screen.flush(WAIT_S)
        assert screen.draws == 2               # welcome, then only the newest state
        assert screen.painter.text_lines(Message.HERE_YOU_GO)[0].text == "请取纸"
    finally:
        screen.close()


def test_only_what_changed_is_redrawn(font: FontFile) -> None:
    clock = VirtualClock()
    screen, sink = _screen(font, clock)
    layout = screen.painter.layout
    frame = silhouette_frame()
    try:
        for step, (message, progress, picture) in enumerate([
                (Message.WELCOME, None, frame), (Message.WELCOME, None, None),
                (Message.HOLD_STILL, 0.5, None), (Message.HOLD_STILL, 0.5, frame),
                (Message.TRY_LATER, None, frame)]):
            screen.show(message, progress, picture)
            clock.advance(0.2)
            assert screen.flush(WAIT_S), step
        assert sink.writes == [
            [layout.screen],                   # first picture: everything
            [layout.guide, layout.text],       # holding still: ring and percentage
            [layout.guide],                    # a new camera picture: the guide only
            [layout.guide, layout.text],       # the result
        ]
    finally:
        screen.close()


def test_the_drawing_rate_is_capped(font: FontFile) -> None:
    clock = VirtualClock()
    screen, sink = _screen(font, clock)
    frame = silhouette_frame()
    try:
        screen.show(Message.WELCOME, None, frame)
        assert screen.flush(WAIT_S)
        for _ in range(5):                      # five frames within one 1/10 s period
            screen.show(Message.WELCOME, None, frame)
        assert screen.flush(0.3) is False       # the thread rests until the period ends
        assert len(sink.writes) == 1
        clock.advance(0.1)
        assert screen.flush(WAIT_S)
        assert len(sink.writes) == 2            # the five became one redraw
    finally:
        screen.close()


def test_a_failing_panel_stops_drawing_but_not_the_service(
        font: FontFile, caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    echo = RecordingDisplay()
    screen, sink = _screen(font, clock, echo=echo)
    from dispenser.display.framebuffer import DisplayDeviceError

    sink.fail = DisplayDeviceError("display: writing /dev/fb0 failed: No such device")
    with caplog.at_level(logging.ERROR, logger="dispenser.display"):
        screen.show(Message.WELCOME)
        assert screen.flush(WAIT_S)
    screen.show(Message.HERE_YOU_GO)           # still accepted, still logged
    assert echo.current is Message.HERE_YOU_GO
    assert [r.getMessage() for r in caplog.records] == [
        "screen_failed error='display: writing /dev/fb0 failed: No such device' "
        "kind=DisplayDeviceError"]
    screen.close()
    assert sink.closed and screen.painter.buffers_zero()


def test_close_leaves_unavailable_and_zeroes_every_buffer(font: FontFile) -> None:
    clock = VirtualClock()
    screen, sink = _screen(font, clock)
    screen.show(Message.HOLD_STILL, 0.3, silhouette_frame())
    assert screen.flush(WAIT_S)
    screen.close()
    assert sink.closed and len(sink.writes) == 2       # the last one: "unavailable"
    assert sink.writes[-1] == [screen.painter.layout.guide, screen.painter.layout.text]
    assert screen.painter.buffers_zero()
    assert sink.threads == {"screen"}    # every write and the close on the drawing thread
    screen.show(Message.WELCOME)                        # after close: ignored, no error

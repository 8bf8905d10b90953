"""The screen as the service sees it: a `Display` whose drawing runs in its own thread.

`show()` is called on every service step and must never delay a decision, so it only
drops the newest state into a one-slot mailbox (a newer state replaces one not yet drawn:
the screen shows the latest, never a backlog) and returns. The drawing thread takes it,
lets the painter redraw what changed and hands the changed rectangles to the sink (the
framebuffer or a window), then rests until `1 / display.max_fps` has passed on the
device clock. States arrive at most once per service step, so the screen is never redrawn
faster than frames come, nor faster than `max_fps`.

A sink that fails while drawing (the panel unplugged) is logged once and drawing stops;
the service, and the log of messages (`echo`), carry on. `close()` leaves "Temporarily
unavailable" on the panel (no camera picture stays on a stopped machine) and overwrites
every buffer that held the picture with zeros.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dispenser.clock import Clock
from dispenser.display.layout import Rect
from dispenser.display.painter import Painter
from dispenser.logsafe import event
from dispenser.service.messages import Display, Message

_log = logging.getLogger("dispenser.display")
JOIN_S = 5.0           # close(): real seconds the drawing thread may take to finish


class Sink(Protocol):
    """Where the picture goes: a framebuffer device or a window."""

    @property
    def name(self) -> str: ...

    @property
    def size(self) -> tuple[int, int]: ...      # the picture's width and height

    def write(self, canvas: np.ndarray, rects: list[Rect]) -> None: ...

    def close(self) -> None: ...


@dataclass
class _State:
    message: Message
    progress: float | None
    frame: np.ndarray | None       # the source's buffer, read by the drawing thread


class ScreenDisplay:
    """Draws the service's messages on a panel, off the service's thread.

    Every call into the sink after start-up, the last picture and the sink's `close()`
    happen on the drawing thread: a GUI toolkit (OpenCV's Qt windows) serves one thread
    only."""

    def __init__(self, painter: Painter, sink: Sink, clock: Clock, max_fps: float,
                 echo: Display | None = None) -> None:
        self.painter = painter
        self.sink = sink
        self._clock = clock
        self._period = 1.0 / max_fps
        self._echo = echo
        self._cond = threading.Condition()
        self._pending: _State | None = None
        self._drawing = False
        self._closing = False
        self._stop = threading.Event()
        self._last: tuple[Message, float | None] | None = None
        self.draws = 0
        self.failed: str | None = None
        self._thread = threading.Thread(target=self._run, name="screen", daemon=True)
        self._thread.start()

    def show(self, message: Message, progress: float | None = None,
             frame: np.ndarray | None = None) -> None:
        if self._echo is not None:
            self._echo.show(message, progress)
        if not self.painter.preview:
            frame = None
        if self.failed is not None or (frame is None and self._last == (message, progress)):
            return
        self._last = (message, progress)
        with self._cond:
            if self._closing:
                return
            if frame is None and self._pending is not None:
                frame = self._pending.frame        # a picture not yet drawn stays due
            self._pending = _State(message, progress, frame)
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` real seconds until the latest state is drawn (tests)."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (self._pending is None and not self._drawing) or self.failed
                is not None or self._closing, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None)
                state, self._pending = self._pending, None
                last = self._closing
                self._drawing = True
            started = self._clock.now()
            if self.failed is None and state is not None:
                try:
                    self._draw(state.message, state.progress, state.frame)
                except Exception as exc:
                    self.failed = str(exc) or type(exc).__name__
                    event(_log, "screen_failed", logging.ERROR, error=repr(self.failed),
                          kind=type(exc).__name__)
            with self._cond:
                self._drawing = False
                self._cond.notify_all()
            if last:
                self._finish()
                return
            if self.failed is None:
                self._clock.sleep_until(started + self._period, self._stop)

    def _draw(self, message: Message, progress: float | None,
              frame: np.ndarray | None) -> None:
        rects = self.painter.paint(message, progress, frame)
        if rects:
            self.sink.write(self.painter.canvas, rects)
            self.draws += 1

    def _finish(self) -> None:
        try:
            self.painter.close()
        finally:
            self.sink.close()

    def close(self) -> None:
        """Draw "Temporarily unavailable" as the last picture, zeroise, close the sink."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._pending = _State(Message.UNAVAILABLE, None, None)
            self._cond.notify_all()
        self._stop.set()
        self._thread.join(JOIN_S)
        if self._thread.is_alive():     # the panel hangs: zeroise what we hold anyway
            event(_log, "screen_stuck", logging.WARNING, seconds=JOIN_S)
            self.painter.close()

"""`open_display`: the display `display.kind` asks for, or the terminal if it cannot be had.

A panel that is missing or not writable, a headless OpenCV asked for a window: one log
line naming what and why, and the service runs on with messages in the log (it keeps
serving paper; the screen is not a reason to refuse anyone). On a framebuffer the first
picture (welcome) is drawn here, before the service starts (and before the privacy guard),
so the pixel conversion is compiled and a device error shows at start-up; a window is
drawn only by the drawing thread (see `window`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from dispenser.clock import Clock
from dispenser.config import DisplaySettings, parse_size
from dispenser.display.fonts import FontError, FontFile, choose_font
from dispenser.display.painter import Painter
from dispenser.display.screen import ScreenDisplay, Sink
from dispenser.errors import DispenserError
from dispenser.logsafe import event
from dispenser.service.messages import Display, Message, TerminalDisplay

_log = logging.getLogger("dispenser.display")


def _sink(settings: DisplaySettings) -> Sink:
    if settings.kind == "framebuffer":
        from dispenser.display.framebuffer import FramebufferSink

        return FramebufferSink(settings.device, settings.sysfs, settings.rotation)
    from dispenser.display.window import WindowSink

    return WindowSink(parse_size("display.size", settings.size))


def choose_display_font(setting: str) -> FontFile:
    """`display.font`, or the bundled subset (with one log line) if it cannot be read."""
    try:
        return choose_font(setting)
    except FontError as exc:
        event(_log, "font_unavailable", logging.WARNING, error=repr(str(exc)),
              using="bundled")
        return choose_font("bundled")


def open_display(settings: DisplaySettings, clock: Clock
                 ) -> tuple[Display, Callable[[], None]]:
    """The display and the function that closes it (zeroising what it drew)."""
    echo = TerminalDisplay(settings.language)
    if settings.kind == "terminal":
        return echo, lambda: None
    try:
        sink = _sink(settings)
    except DispenserError as exc:
        event(_log, "screen_unavailable", logging.WARNING, error=repr(str(exc)),
              using="terminal")
        return echo, lambda: None
    font = choose_display_font(settings.font)
    width, height = sink.size
    painter = Painter(width, height, font, settings.language, preview=settings.preview)
    try:
        if settings.kind == "framebuffer":
            sink.write(painter.canvas, painter.paint(Message.WELCOME))
    except DispenserError as exc:
        painter.close()
        sink.close()
        event(_log, "screen_unavailable", logging.WARNING, error=repr(str(exc)),
              using="terminal")
        return echo, lambda: None
    event(_log, "screen", panel=repr(sink.name), font=repr(font.name),
          language=settings.language, preview=settings.preview)
    screen = ScreenDisplay(painter, sink, clock, settings.max_fps, echo=echo)
    return screen, screen.close

# Chinese text uses full-width commas and parentheses on purpose.
# ruff: noqa: RUF001
"""Everything the person in front of the machine reads, in one place, ready for translation.

Why one table: a translator (or an auditor checking that no message reveals identity or
the time left in the deny window) reads a single dict per language. Messages never carry
data about a person: the only parameter any message takes is the hold-still progress.

`Display` is what the service talks to; `TerminalDisplay` writes changes to the log (the
board's text screen driver or the simulator's preview build on the same protocol), and
`RecordingDisplay` keeps what was shown, for tests.
"""

from __future__ import annotations

import enum
import logging
from types import MappingProxyType
from typing import Protocol

from dispenser.logsafe import event


class Message(enum.Enum):
    """What the display can say. The value names the message in logs and JSON."""

    WELCOME = "welcome"
    LOOK_AT_CAMERA = "look_at_camera"
    COME_CLOSER = "come_closer"
    ONE_AT_A_TIME = "one_at_a_time"
    HOLD_STILL = "hold_still"
    DISPENSING = "dispensing"
    HERE_YOU_GO = "here_you_go"
    TRY_LATER = "try_later"
    BUTTON_WAIT = "button_wait"
    OUT_OF_PAPER = "out_of_paper"
    UNAVAILABLE = "unavailable"


_M = Message

# "{percent}" is the only placeholder any message has (hold-still progress, 0-100).
TEXTS: MappingProxyType[str, MappingProxyType[Message, str]] = MappingProxyType({
    "en": MappingProxyType({
        _M.WELCOME: "Look at the camera for paper, or press the button (no face scan)",
        _M.LOOK_AT_CAMERA: "Please look at the camera and hold still",
        _M.COME_CLOSER: "Please come a little closer to the camera",
        _M.ONE_AT_A_TIME: "One person at a time, please",
        _M.HOLD_STILL: "Hold still… {percent}%",
        _M.DISPENSING: "Dispensing…",
        _M.HERE_YOU_GO: "Here you go",
        _M.TRY_LATER: "Paper was dispensed to you recently, please try again later",
        _M.BUTTON_WAIT: "The button was used a moment ago, please try again shortly",
        _M.OUT_OF_PAPER: "Out of paper — please ask staff",
        _M.UNAVAILABLE: "Temporarily unavailable",
    }),
    "zh": MappingProxyType({
        _M.WELCOME: "请看向摄像头取纸，或按下按钮（无需刷脸）",
        _M.LOOK_AT_CAMERA: "请看摄像头并保持不动",
        _M.COME_CLOSER: "请靠近摄像头一点",
        _M.ONE_AT_A_TIME: "请一位一位来",
        _M.HOLD_STILL: "请保持不动… {percent}%",
        _M.DISPENSING: "正在出纸…",
        _M.HERE_YOU_GO: "请取纸",
        _M.TRY_LATER: "您近期已领取过纸巾，请稍后再试",
        _M.BUTTON_WAIT: "按钮刚刚使用过，请稍后再试",
        _M.OUT_OF_PAPER: "纸巾已用完，请联系工作人员",
        _M.UNAVAILABLE: "暂时无法使用",
    }),
})

LANGUAGES: tuple[str, ...] = tuple(TEXTS)


def render(message: Message, language: str, progress: float | None = None) -> str:
    """The text of `message` in `language`; `progress` (0..1) fills the hold-still bar."""
    template = TEXTS[language][message]
    percent = 0 if progress is None else round(100 * min(max(progress, 0.0), 1.0))
    return template.format(percent=percent)


class Display(Protocol):
    """The screen (or LED + text) in front of the person."""

    def show(self, message: Message, progress: float | None = None) -> None:
        """Show `message`; called on every step, so implementations skip repeats."""
        ...


class TerminalDisplay:
    """Logs each change of the displayed text (board without a screen, `dispenser run`).

    Progress is shown in steps of `progress_step` so a 3 s hold logs a handful of lines,
    not one per frame."""

    def __init__(self, language: str, logger: logging.Logger | None = None,
                 progress_step: float = 0.25) -> None:
        self._language = language
        self._log = logger or logging.getLogger("dispenser.display")
        self._step = progress_step
        self._last: tuple[Message, int] | None = None

    def show(self, message: Message, progress: float | None = None) -> None:
        bucket = 0 if progress is None else int(min(max(progress, 0.0), 1.0) / self._step)
        if self._last == (message, bucket):
            return
        self._last = (message, bucket)
        shown = None if progress is None else bucket * self._step
        event(self._log, "display", message=message.value,
              text=repr(render(message, self._language, shown)))


class RecordingDisplay:
    """Keeps every distinct message shown, in order (consecutive repeats collapsed)."""

    def __init__(self) -> None:
        self.shown: list[Message] = []
        self.last_progress: float | None = None

    def show(self, message: Message, progress: float | None = None) -> None:
        if not self.shown or self.shown[-1] is not message:
            self.shown.append(message)
        self.last_progress = progress

    @property
    def current(self) -> Message | None:
        return self.shown[-1] if self.shown else None

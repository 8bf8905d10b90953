# Chinese text uses full-width commas and parentheses on purpose.
# ruff: noqa: RUF001
"""Everything the person in front of the machine reads, in one place, ready for translation.

Why one table: a translator (or an auditor checking that no message reveals identity or
the time left in the deny window) reads a single dict per language. Messages never carry
data about a person: the only parameter any message takes is the hold-still progress.
The screen shows Simplified Chinese and English together by default (`display.language =
"zh+en"`); `lines()` gives the text of one message in the order a display language shows it.

`Display` is what the service talks to; `TerminalDisplay` writes changes to the log,
`dispenser.display.ScreenDisplay` draws them on a panel (framebuffer or window), and
`RecordingDisplay` keeps what was shown, for tests.
"""

from __future__ import annotations

import enum
import logging
from types import MappingProxyType
from typing import Protocol

import numpy as np

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
    SHORT_RIBBON = "short_ribbon"   # after the shorter ribbon of a likely match
    TRY_LATER = "try_later"
    BUTTON_WAIT = "button_wait"
    OUT_OF_PAPER = "out_of_paper"
    UNAVAILABLE = "unavailable"
    BUTTON_HINT = "button_hint"     # the screen's permanent footer: the no-scan option


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
        _M.SHORT_RIBBON: "Here you go: a shorter ribbon this time",
        _M.TRY_LATER: "Paper was dispensed to you recently, please try again later",
        _M.BUTTON_WAIT: "The button was used a moment ago, please try again shortly",
        _M.OUT_OF_PAPER: "Out of paper — please ask staff",
        _M.UNAVAILABLE: "Temporarily unavailable",
        _M.BUTTON_HINT: "No face scan? Press the button",
    }),
    "zh": MappingProxyType({
        _M.WELCOME: "请看向摄像头取纸，或按下按钮（无需刷脸）",
        _M.LOOK_AT_CAMERA: "请看摄像头并保持不动",
        _M.COME_CLOSER: "请靠近摄像头一点",
        _M.ONE_AT_A_TIME: "请一位一位来",
        _M.HOLD_STILL: "请保持不动… {percent}%",
        _M.DISPENSING: "正在出纸…",
        _M.HERE_YOU_GO: "请取纸",
        _M.SHORT_RIBBON: "请取纸（本次较短）",
        _M.TRY_LATER: "您近期已领取过纸巾，请稍后再试",
        _M.BUTTON_WAIT: "按钮刚刚使用过，请稍后再试",
        _M.OUT_OF_PAPER: "纸巾已用完，请联系工作人员",
        _M.UNAVAILABLE: "暂时无法使用",
        _M.BUTTON_HINT: "不想刷脸？请按按钮取纸",
    }),
})

# The words of the Chinese texts that a line must not split (Chinese may otherwise break
# between any two characters: "纸" at a line's end and "巾" on the next reads as two
# words). Add the words of a new or changed text here; tests/display/test_typeset.py
# checks that each one is used and never split.
ZH_WORDS: frozenset[str] = frozenset({
    "看向", "摄像头", "取纸", "按下", "按钮", "无需", "刷脸", "保持", "不动", "靠近",
    "一点", "一位", "正在", "出纸", "本次", "较短", "近期", "领取", "纸巾", "稍后",
    "再试", "刚刚", "使用", "用完", "联系", "工作人员", "暂时", "无法", "不想",
})

LANGUAGES: tuple[str, ...] = tuple(TEXTS)
# What `display.language` may say: one language, or Chinese and English together.
DISPLAY_LANGUAGES: tuple[str, ...] = ("zh+en", "zh", "en")


def render(message: Message, language: str, progress: float | None = None) -> str:
    """The text of `message` in `language`; `progress` (0..1) fills the hold-still bar."""
    template = TEXTS[language][message]
    percent = 0 if progress is None else round(100 * min(max(progress, 0.0), 1.0))
    return template.format(percent=percent)


def lines(message: Message, display_language: str, progress: float | None = None
          ) -> tuple[str, ...]:
    """The text of `message` in each language of `display_language` ("zh+en": Chinese
    first, then English), in the order the screen shows them."""
    return tuple(render(message, language, progress)
                 for language in display_language.split("+"))


class Display(Protocol):
    """The screen (or LED + text) in front of the person."""

    def show(self, message: Message, progress: float | None = None,
             frame: np.ndarray | None = None) -> None:
        """Show `message`; called on every step, so implementations skip repeats.

        `frame` is the camera frame read in this step (None: no new one), for a screen's
        mirrored preview. It is the frame source's own reused, swap-locked buffer: a
        display may read it until the next step, and keeps no copy of its own."""
        ...


class TerminalDisplay:
    """Logs each change of the displayed text (board without a screen, `dispenser run`).

    Progress is shown in steps of `progress_step` so a 3 s hold logs a handful of lines,
    not one per frame."""

    def __init__(self, language: str = "zh+en", logger: logging.Logger | None = None,
                 progress_step: float = 0.25) -> None:
        self._language = language
        self._log = logger or logging.getLogger("dispenser.display")
        self._step = progress_step
        self._last: tuple[Message, int] | None = None

    def show(self, message: Message, progress: float | None = None,
             frame: np.ndarray | None = None) -> None:
        bucket = 0 if progress is None else int(min(max(progress, 0.0), 1.0) / self._step)
        if self._last == (message, bucket):
            return
        self._last = (message, bucket)
        shown = None if progress is None else bucket * self._step
        event(self._log, "display", message=message.value,
              text=repr(" / ".join(lines(message, self._language, shown))))


class RecordingDisplay:
    """Keeps every distinct message shown, in order (consecutive repeats collapsed)."""

    def __init__(self) -> None:
        self.shown: list[Message] = []
        self.last_progress: float | None = None

    def show(self, message: Message, progress: float | None = None,
             frame: np.ndarray | None = None) -> None:
        if not self.shown or self.shown[-1] is not message:
            self.shown.append(message)
        self.last_progress = progress

    @property
    def current(self) -> Message | None:
        return self.shown[-1] if self.shown else None

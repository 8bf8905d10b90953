"""Display strings: complete in every language, no data about a person, ready for a screen."""

from __future__ import annotations

import logging
import re

import pytest

from dispenser.config import DisplaySettings
from dispenser.service.messages import (
    DISPLAY_LANGUAGES,
    LANGUAGES,
    TEXTS,
    Message,
    RecordingDisplay,
    TerminalDisplay,
    lines,
    render,
)


def test_every_language_has_every_message_and_the_config_allows_exactly_these() -> None:
    for language in LANGUAGES:
        assert set(TEXTS[language]) == set(Message)
    choices = DisplaySettings.__dataclass_fields__["language"].metadata["choices"]
    assert tuple(choices) == DISPLAY_LANGUAGES
    assert DisplaySettings().language == "zh+en"
    for display_language in DISPLAY_LANGUAGES:
        assert set(display_language.split("+")) <= set(LANGUAGES)


def test_zh_en_shows_chinese_first_then_english() -> None:
    assert lines(Message.HERE_YOU_GO, "zh+en") == ("请取纸", "Here you go")
    assert lines(Message.HOLD_STILL, "en", 0.5) == ("Hold still… 50%",)
    assert lines(Message.SHORT_RIBBON, "zh") == ("请取纸（本次较短）",)  # noqa: RUF001


def test_terminal_display_joins_both_languages(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="dispenser.display"):
        TerminalDisplay("zh+en").show(Message.UNAVAILABLE)
    assert caplog.records[0].getMessage() == (
        "display message=unavailable text='暂时无法使用 / Temporarily unavailable'")


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_message_carries_a_number_a_time_or_a_placeholder_but_progress(
        language: str) -> None:
    for message, text in TEXTS[language].items():
        placeholders = re.findall(r"{(\w*)}", text)
        assert placeholders == (["percent"] if message is Message.HOLD_STILL else [])
        assert not re.search(r"\d", text), (message, text)


def test_the_refusal_never_tells_the_time_left_or_who() -> None:
    assert render(Message.TRY_LATER, "en") == (
        "Paper was dispensed to you recently, please try again later")
    assert render(Message.TRY_LATER, "zh") == "您近期已领取过纸巾，请稍后再试"  # noqa: RUF001


def test_progress_is_clamped_and_rounded() -> None:
    assert render(Message.HOLD_STILL, "en", 0.333) == "Hold still… 33%"
    assert render(Message.HOLD_STILL, "en", 7.0) == "Hold still… 100%"
    assert render(Message.HOLD_STILL, "zh", -1.0) == "请保持不动… 0%"
    assert render(Message.HERE_YOU_GO, "zh") == "请取纸"


def test_terminal_display_logs_changes_only(caplog: pytest.LogCaptureFixture) -> None:
    display = TerminalDisplay("en", progress_step=0.25)
    with caplog.at_level(logging.INFO, logger="dispenser.display"):
        display.show(Message.WELCOME)
        display.show(Message.WELCOME)
        for p in (0.0, 0.1, 0.2, 0.3, 0.6, 0.9, 1.0):
            display.show(Message.HOLD_STILL, p)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 + 5           # welcome, then 0, 25, 50, 75, 100 %
    assert lines[2] == "display message=hold_still text='Hold still… 25%'"


def test_recording_display_collapses_repeats() -> None:
    display = RecordingDisplay()
    for m in (Message.WELCOME, Message.WELCOME, Message.HOLD_STILL, Message.WELCOME):
        display.show(m)
    assert display.shown == [Message.WELCOME, Message.HOLD_STILL, Message.WELCOME]
    assert display.current is Message.WELCOME

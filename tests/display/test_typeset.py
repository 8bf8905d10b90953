"""Line breaking of the screen texts: a Chinese word is never split across two lines."""

from __future__ import annotations

import itertools

import pytest

from dispenser.display.fonts import FontFile, font_at
from dispenser.display.painter import Painter
from dispenser.display.typeset import text_width, wrap
from dispenser.service.messages import TEXTS, ZH_WORDS, Message, render

PX = 40


def _split_words(lines: list[str]) -> list[str]:
    """The listed words that straddle a line break in `lines`."""
    joined, breaks, at = "".join(lines), set(), 0
    for line in lines[:-1]:
        at += len(line)
        breaks.add(at)
    split = []
    for word in ZH_WORDS:
        start = joined.find(word)
        while start >= 0:
            if any(start < b < start + len(word) for b in breaks):
                split.append(word)
            start = joined.find(word, start + 1)
    return split


@pytest.mark.parametrize("message", list(Message), ids=lambda m: m.value)
def test_no_listed_word_is_split_at_any_width(font: FontFile, message: Message) -> None:
    text = render(message, "zh", 1.0)
    face = font_at(font, PX)
    widest_word = max(text_width(face, w) for w in ZH_WORDS)
    for width in range(widest_word, text_width(face, text) + 1, 4):
        lines = wrap(text, font, PX, width)
        assert _split_words(lines) == [], (width, lines)


@pytest.mark.parametrize("size", [(800, 480), (320, 240), (480, 800)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("language", ["zh", "zh+en"])
def test_the_try_later_screen_keeps_paper_towel_on_one_line(
        font: FontFile, size: tuple[int, int], language: str) -> None:
    """纸巾 (paper towel) was set as 纸 at the end of one line and 巾 on the next."""
    painter = Painter(*size, font, language)
    try:
        chinese = [ln.text for ln in painter.text_lines(Message.TRY_LATER, None)
                   if any(ord(ch) > 0x2E80 for ch in ln.text)]
    finally:
        painter.close()
    assert len(chinese) > 1  # broken somewhere, just not inside a word
    assert any("纸巾" in line for line in chinese), chinese
    assert not any(a.endswith("纸") and b.startswith("巾")
                   for a, b in itertools.pairwise(chinese))


def test_every_listed_word_is_in_a_chinese_text() -> None:
    texts = "".join(TEXTS["zh"].values())
    assert sorted(w for w in ZH_WORDS if w not in texts) == []

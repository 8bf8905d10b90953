"""Glyphs that exist: every character of every message is drawn by the font, never as
its missing-glyph box ("tofu"); the bundled subset is what its card says it is."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont

from dispenser.display.fonts import (
    BUNDLED,
    FontError,
    FontFile,
    choose_font,
    font_at,
    message_characters,
    missing_glyphs,
)
from dispenser.service.messages import TEXTS


def test_every_message_character_is_in_the_bundled_fonts_character_map() -> None:
    cmap = TTFont(str(BUNDLED)).getBestCmap()
    needed = message_characters()
    assert {"请", "纸", "，", "…", "%", "0", "9", "H"} <= set(needed)  # noqa: RUF001
    assert [ch for ch in needed if ord(ch) not in cmap] == []


@pytest.mark.parametrize("px", [12, 40])
def test_no_character_of_any_message_renders_as_tofu(font: FontFile, px: int) -> None:
    face = font_at(font, px)
    for language, table in TEXTS.items():
        for message, text in table.items():
            assert missing_glyphs(face, text) == "", (language, message)


def test_the_tofu_check_finds_characters_the_font_lacks(font: FontFile) -> None:
    """Positive control: characters outside the subset are reported, spaces never."""
    face = font_at(font, 24)
    assert missing_glyphs(face, "纸龍 ☃ a") == "龍☃"


def test_the_bundled_font_matches_its_card() -> None:
    card = (BUNDLED.parent / "NotoSansSC-Bold-subset.md").read_text(encoding="utf-8")
    digest = re.search(r"\| sha256 \| `([0-9a-f]{64})` \|", card)
    assert digest is not None
    assert hashlib.sha256(BUNDLED.read_bytes()).hexdigest() == digest.group(1)
    assert "SIL Open Font License" in card and "justmytype-intl-cjk" in card
    licence = (BUNDLED.parent / "OFL-NotoSansSC.txt").read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE Version 1.1" in licence


@pytest.mark.slow      # instancing the 17 MB variable font takes about a minute
def test_the_subset_script_reproduces_the_bundled_font(tmp_path: Path) -> None:
    pytest.importorskip("justmytype_intl_cjk", reason="pip install '.[fonts]'")
    from dispenser.data.make_font_subset import make

    made = make(tmp_path)
    assert made.read_bytes() == BUNDLED.read_bytes()


def test_a_font_without_chinese_falls_back_to_the_bundled_one(
        caplog: pytest.LogCaptureFixture) -> None:
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    with caplog.at_level(logging.INFO, logger="dispenser.display"):
        chosen = choose_font(str(dejavu))
    assert chosen.path == BUNDLED
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("font_incomplete font='DejaVu Sans Book' missing='")
    assert "纸" in line and line.endswith("using=bundled")


def test_a_font_that_covers_everything_is_used_as_given(tmp_path: Path) -> None:
    copy = tmp_path / "screen.ttf"
    copy.write_bytes(BUNDLED.read_bytes())
    assert choose_font(str(copy)).path == copy


def test_a_missing_font_file_is_one_line_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FontError, match=r"^display: font file not found: .*nope\.ttf"):
        choose_font(str(tmp_path / "nope.ttf"))

"""Every screen state, in every language, at two panel sizes (and a portrait panel): the
text inside its panel and nothing clipped, the no-scan footer always there, the guide
ring filled exactly as far as the hold-still progress."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dispenser.display import screens
from dispenser.display.demo import demo_states, silhouette_frame
from dispenser.display.fonts import FontFile, font_at
from dispenser.display.painter import Painter, footer_blocks
from dispenser.display.screens import SCREENS, Look
from dispenser.display.typeset import text_width
from dispenser.service.messages import DISPLAY_LANGUAGES, Message, lines

CAP_DEGREES = 8
SIZES = [(800, 480), (320, 240), (480, 800)]


def test_every_message_but_the_footer_is_a_screen_state() -> None:
    assert set(SCREENS) == set(Message) - {screens.FOOTER_MESSAGE}
    result_looks = {(s.colour, s.icon) for s in SCREENS.values() if s.look is Look.RESULT}
    icons = [s.icon for s in SCREENS.values() if s.look is Look.RESULT]
    assert all(icons)
    # Colour is never the only cue: states with different colours have different icons.
    by_colour: dict[object, set[object]] = {}
    for colour, icon in result_looks:
        by_colour.setdefault(icon, set()).add(colour)
    assert all(len(colours) == 1 for colours in by_colour.values())


def _words(text: str) -> str:
    return "".join(text.split())


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("language", DISPLAY_LANGUAGES)
def test_text_fits_its_panel_in_every_state(font: FontFile, size: tuple[int, int],
                                            language: str) -> None:
    painter = Painter(*size, font, language)
    box, screen = painter.layout.text, painter.layout.screen
    try:
        for message, progress in demo_states():
            placed = painter.text_lines(message, progress)
            for line in placed:
                assert box.contains(line.ink), (message, line)
                assert text_width(font_at(font, line.px), line.text) <= box.w
                assert line.px >= 10
            # Nothing dropped: the lines together are the message, in order.
            assert _words("".join(ln.text for ln in placed)) == _words(
                "".join(lines(message, language, progress)))
            assert not any(a.ink.bottom > b.ink.y for a, b in itertools.pairwise(placed))
        footer = painter.footer_lines()
        assert footer and all(painter.layout.footer_text.contains(ln.ink) for ln in footer)
        assert _words("".join(ln.text for ln in footer)) == _words(footer_blocks(language)[0])
        assert screen.contains(painter.layout.footer)
    finally:
        painter.close()


@pytest.mark.parametrize("size", SIZES[:2], ids=lambda s: f"{s[0]}x{s[1]}")
def test_text_is_drawn_where_the_layout_says(font: FontFile, size: tuple[int, int]) -> None:
    """The painted canvas has white text pixels inside the text lines' ink boxes only."""
    painter = Painter(*size, font, "zh+en")
    try:
        painter.paint(Message.TRY_LATER)
        area = painter.layout.text
        white = np.all(painter.canvas == screens.TEXT, axis=2)
        mask = np.zeros_like(white)
        for line in painter.text_lines(Message.TRY_LATER):
            mask[line.ink.y:line.ink.bottom, line.ink.x:line.ink.right] = True
        text_area = np.zeros_like(white)
        text_area[area.y:area.bottom, area.x:area.right] = True
        assert white[text_area].sum() > 100
        assert not (white & text_area & ~mask).any()
    finally:
        painter.close()


def _angle_colour(painter: Painter, degrees: float) -> tuple[int, ...]:
    """The colour (RGB) on the ring at `degrees` clockwise from the top."""
    o = painter.layout.oval
    a = math.radians(degrees - 90)
    x = round(o.cx + o.rx * math.cos(a))
    y = round(o.cy + o.ry * math.sin(a))
    return tuple(int(v) for v in painter.canvas[y, x, ::-1])


@pytest.mark.parametrize("size", SIZES[:2], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("progress", [0.0, 0.25, 0.6, 1.0])
def test_the_guide_ring_matches_the_progress(font: FontFile, size: tuple[int, int],
                                             progress: float) -> None:
    painter = Painter(*size, font, "en")
    try:
        painter.paint(Message.HOLD_STILL, progress, silhouette_frame())
        end = 360 * progress
        checked = 0
        for degrees in range(0, 360, 3):
            # The arc's rounded ends overlap a few degrees of track at its start and end.
            if min(degrees, 360 - degrees, abs(degrees - end)) < CAP_DEGREES:
                continue
            expected = screens.RING_FILL if degrees < end else screens.RING_TRACK
            assert _angle_colour(painter, degrees) == expected, (progress, degrees)
            checked += 1
        assert checked > 90
    finally:
        painter.close()


def test_before_holding_still_the_guide_is_a_grey_oval(font: FontFile) -> None:
    painter = Painter(800, 480, font, "en")
    try:
        painter.paint(Message.LOOK_AT_CAMERA, None, silhouette_frame())
        assert {_angle_colour(painter, d) for d in (10, 100, 190, 280)} == {
            screens.GUIDE_IDLE}
    finally:
        painter.close()


def test_the_camera_picture_is_mirrored_and_fills_the_guide(font: FontFile) -> None:
    """The visitor sees themselves as in a mirror: the camera's left is the screen's
    right. Without a picture (preview off) the guide is plain."""
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :320] = (0, 0, 200)              # the camera's left half is red (BGR)
    painter = Painter(800, 480, font, "en")
    plain = Painter(800, 480, font, "en", preview=False)
    try:
        painter.paint(Message.WELCOME, None, frame)
        plain.paint(Message.WELCOME, None, frame)
        g = painter.layout.guide
        row = painter.canvas[g.y + 3, g.x:g.right]
        assert tuple(row[-3]) == (0, 0, 200) and tuple(row[2]) == (0, 0, 0)
        assert not (plain.canvas[g.y + 3, g.x:g.right] == (0, 0, 200)).all(axis=1).any()
    finally:
        painter.close()
        plain.close()

"""Text set in a box: wrapped, as large as fits, centred; every line's ink box known.

Chinese breaks between words (the words of the messages are listed in
`messages.ZH_WORDS`; any other character stands alone), never before closing punctuation;
English at spaces. The size is the largest (down to a floor) at which every line of every block fits
the box; a second block (English under Chinese) is set a little smaller. `fit_px` can be
given the widest text a message can take (hold-still at 100 %) so the size does not jump
while the percentage counts up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from PIL import ImageFont

from dispenser.display.fonts import FontFile, font_at
from dispenser.display.layout import Rect
from dispenser.service.messages import ZH_WORDS

SECOND_BLOCK_SCALE = 0.72
LINE_SPACING = 1.18
UNWRAPPED_AT_LEAST = 0.7   # one line per block is worth this much of the size
BLOCK_GAP = 0.35          # extra space between blocks, in first-block font heights
_NO_LINE_START = set("，。、：；！？）》」…%,.;:!?)")  # noqa: RUF001
_NO_LINE_END = set("（《「(")  # noqa: RUF001
_WORDS_LONGEST_FIRST = sorted(ZH_WORDS, key=len, reverse=True)


@dataclass(frozen=True)
class Line:
    text: str
    px: int
    x: int               # where Pillow draws it (left, top of the font's ascent)
    y: int
    ink: Rect            # the pixels it really covers


def _is_wide(ch: str) -> bool:
    return ord(ch) >= 0x2E80 or ch == "…"


def _tokens(text: str) -> list[str]:
    """Unbreakable pieces: a space, a Chinese word or other wide character (with any
    closing punctuation after it), or a run of narrow characters (an English word)."""
    tokens: list[str] = []
    i = 0
    while i < len(text):
        piece = next((w for w in _WORDS_LONGEST_FIRST if text.startswith(w, i)), text[i])
        ch = piece[0]
        previous = tokens[-1] if tokens else " "
        joins = previous != " " and ch != " " and (
            ch in _NO_LINE_START or previous[-1] in _NO_LINE_END
            or not (_is_wide(ch) or _is_wide(previous[-1])))
        if joins:
            tokens[-1] += piece
        else:
            tokens.append(piece)
        i += len(piece)
    return tokens


def text_width(face: ImageFont.FreeTypeFont, text: str) -> int:
    """Pixels `text` needs: its advance, or its ink where a glyph overhangs (an italic-like
    'f', a wide final stroke), whichever reaches further on each side."""
    left, _, right, _ = face.getbbox(text)
    return math.ceil(max(right, face.getlength(text)) - min(left, 0))


def wrap(text: str, font: FontFile, px: int, width: int) -> list[str]:
    """Greedy line breaking of `text` at `px` into lines no wider than `width` (a single
    token wider than `width` gets a line of its own)."""
    face = font_at(font, px)
    lines: list[str] = []
    current = ""
    for token in _tokens(text):
        candidate = current + token
        if current.strip() and text_width(face, candidate.rstrip()) > width:
            lines.append(current.rstrip())
            current = token.lstrip()
        else:
            current = candidate
    if current.strip():
        lines.append(current.rstrip())
    return lines


def wrap_balanced(text: str, font: FontFile, px: int, width: int) -> list[str]:
    """`wrap` into as few lines, but made as even as possible (no lone last character):
    the narrowest width that still needs no more lines than `width` does."""
    lines = wrap(text, font, px, width)
    if len(lines) <= 1:
        return lines
    lo, hi = width // len(lines), width
    while lo < hi:
        mid = (lo + hi) // 2
        if len(wrap(text, font, px, mid)) <= len(lines):
            hi = mid
        else:
            lo = mid + 1
    return wrap(text, font, px, hi)


def _block_px(px: int, block: int) -> int:
    return px if block == 0 else max(1, round(px * SECOND_BLOCK_SCALE))


def _line_height(font: FontFile, px: int) -> int:
    ascent, descent = font_at(font, px).getmetrics()
    return round((ascent + descent) * LINE_SPACING)


def _fits(blocks: Sequence[str], font: FontFile, px: int, box: Rect) -> bool:
    height = 0
    for i, block in enumerate(blocks):
        bpx = _block_px(px, i)
        face = font_at(font, bpx)
        wrapped = wrap(block, font, bpx, box.w)
        if any(text_width(face, line) > box.w for line in wrapped):
            return False
        height += len(wrapped) * _line_height(font, bpx) + (round(BLOCK_GAP * px) if i else 0)
    return height <= box.h


def _largest(blocks: tuple[str, ...], font: FontFile, box: Rect, max_px: int,
             min_px: int, *, unwrapped: bool) -> int:
    """The largest size in [min_px, max_px] at which `blocks` fit (min_px if none);
    `unwrapped`: with the first block (the main language) on one line."""
    def ok(px: int) -> bool:
        return _fits(blocks, font, px, box) and (
            not unwrapped or len(wrap(blocks[0], font, px, box.w)) == 1)

    lo, hi = min_px, max_px
    if not ok(lo):
        return lo
    while lo < hi:                      # the fit is monotonic in the size
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


@lru_cache(maxsize=512)
def fit_px(blocks: tuple[str, ...], font: FontFile, box: Rect, max_px: int,
           min_px: int) -> int:
    """The size to set `blocks` at in `box`: the largest that fits, unless a size not much
    smaller keeps the first block on one line (a short message broken in two reads
    worse)."""
    wrapped = _largest(blocks, font, box, max_px, min_px, unwrapped=False)
    single = _largest(blocks, font, box, max_px, min_px, unwrapped=True)
    return single if single >= UNWRAPPED_AT_LEAST * wrapped else wrapped


@lru_cache(maxsize=512)
def place(blocks: tuple[str, ...], font: FontFile, box: Rect, px: int) -> tuple[Line, ...]:
    """Every line of `blocks` at size `px`, centred in `box` as a group."""
    rows: list[tuple[str, int, int]] = []      # text, px, y offset
    y = 0
    for i, block in enumerate(blocks):
        bpx = _block_px(px, i)
        if i:
            y += round(BLOCK_GAP * px)
        for text in wrap_balanced(block, font, bpx, box.w):
            rows.append((text, bpx, y))
            y += _line_height(font, bpx)
    top = box.y + max(0, (box.h - y) // 2)
    placed = []
    for text, bpx, dy in rows:
        face = font_at(font, bpx)
        left, upper, right, lower = (int(v) for v in face.getbbox(text))
        x = box.x + (box.w - text_width(face, text)) // 2 - min(left, 0)
        ascent, descent = face.getmetrics()
        pad = (_line_height(font, bpx) - ascent - descent) // 2
        ty = top + dy + pad
        placed.append(Line(text, bpx, x, ty,
                           Rect(x + left, ty + upper, right - left, lower - upper)))
    return tuple(placed)

"""A font that can draw every character the machine says ("no tofu").

Where it comes from (`display.font`):

- `auto`: Noto Sans CJK SC as fontconfig finds it (Debian's `fonts-noto-cjk` on the
  board: `apt install fonts-noto-cjk`), else the bundled subset;
- `bundled`: `dispenser/data/NotoSansSC-Bold-subset.ttf`, Noto Sans SC cut to the
  characters of the messages (made by `python -m dispenser.data.make_font_subset` from a
  PyPI package; provenance and hashes in its card);
- a path to a .ttf/.otf/.ttc file (in a collection, the Simplified Chinese face is used).

Whatever is chosen is checked against every message before use: a character the font
would draw as its "missing glyph" box (.notdef) makes it fall back to the bundled subset,
with one log line naming the font and the characters.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

from dispenser.errors import DispenserError
from dispenser.logsafe import event
from dispenser.service.messages import TEXTS

_log = logging.getLogger("dispenser.display")

BUNDLED = Path(__file__).resolve().parent.parent / "data" / "NotoSansSC-Bold-subset.ttf"
FONTCONFIG_PATTERN = "Noto Sans CJK SC:style=Bold"
_PROBE_PX = 32
_NOT_A_CHARACTER = "\uffff"      # never in any cmap: always drawn as .notdef
_MAX_FACES = 32                  # faces looked at in a font collection


class FontError(DispenserError):
    """A configured font file is missing or unreadable (one line naming it)."""


@dataclass(frozen=True)
class FontFile:
    path: Path
    index: int               # face index inside a collection (.ttc), else 0
    name: str                # family and style, for the log


def message_characters() -> str:
    """Every character of every message in every language (what the font must cover)."""
    chars: set[str] = set()
    for table in TEXTS.values():
        for text in table.values():
            chars.update(text.replace("{percent}", "0123456789"))
    return "".join(sorted(chars))


def _glyph(font: ImageFont.FreeTypeFont, ch: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(ch)
    return mask.size, bytes(mask)


def missing_glyphs(font: ImageFont.FreeTypeFont, text: str) -> str:
    """The characters of `text` that `font` draws as its .notdef ("tofu") glyph.

    Compared as rendered bitmaps, so it checks what the screen would show, not only the
    font's character map. Whitespace draws nothing in any font and is skipped."""
    notdef = _glyph(font, _NOT_A_CHARACTER)
    return "".join(ch for ch in dict.fromkeys(text)
                   if not ch.isspace() and _glyph(font, ch) == notdef)


def _face_of(path: Path) -> FontFile:
    """The face to use in `path`: in a collection, the one whose family says SC."""
    faces: list[FontFile] = []
    for index in range(_MAX_FACES):
        try:
            font = ImageFont.truetype(str(path), _PROBE_PX, index=index)
        except OSError:
            if index == 0:
                raise FontError(f"display: cannot read font {path}") from None
            break
        family, style = font.getname()
        faces.append(FontFile(path, index, f"{family} {style}"))
        if path.suffix.lower() not in (".ttc", ".otc"):
            break
    return next((f for f in faces if " SC" in f.name), faces[0])


def _fontconfig_match() -> Path | None:
    """The file fontconfig gives for Noto Sans CJK SC Bold (None: no fontconfig)."""
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    try:
        found = subprocess.run([fc_match, "--format=%{file}", FONTCONFIG_PATTERN],
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    path = Path(found.stdout.strip())
    return path if found.returncode == 0 and path.is_file() else None


def choose_font(setting: str) -> FontFile:
    """The font `display.font` names, checked to cover every message (see module doc)."""
    bundled = FontFile(BUNDLED, 0, "bundled Noto Sans SC subset")
    if setting == "bundled":
        return bundled
    if setting == "auto":
        path = _fontconfig_match()
        if path is None:
            return bundled
    else:
        path = Path(setting).expanduser()
        if not path.is_file():
            raise FontError(f"display: font file not found: {path} (display.font)")
    chosen = _face_of(path)
    missing = missing_glyphs(font_at(chosen, _PROBE_PX), message_characters())
    if missing:
        level = logging.INFO if setting == "auto" else logging.WARNING
        event(_log, "font_incomplete", level, font=repr(chosen.name),
              missing=repr(missing), using="bundled")
        return bundled
    return chosen


@lru_cache(maxsize=64)
def font_at(font: FontFile, px: int) -> ImageFont.FreeTypeFont:
    """`font` at `px` pixels (cached: layout tries many sizes, redraws reuse them)."""
    return ImageFont.truetype(str(font.path), px, index=font.index)

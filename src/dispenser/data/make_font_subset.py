"""Re-create the bundled screen font, `NotoSansSC-Bold-subset.ttf`, from its registry package.

    pip install '.[fonts]'                       # fontTools + justmytype-intl-cjk (PyPI)
    python -m dispenser.data.make_font_subset    # rewrites the font and its card

Why a subset: the screen needs a font that covers every character of every message
(`dispenser.service.messages.TEXTS`) on machines that have no CJK font installed (CI, a
laptop). Noto Sans SC is 17 MB; the characters the machine says, plus printable ASCII,
fit in a few tens of kilobytes. The source is Google Fonts' variable Noto Sans SC as
packaged on PyPI by `justmytype-intl-cjk` (SIL Open Font License 1.1, which permits
redistributing a modified font under the same licence; the licence travels as
`OFL-NotoSansSC.txt`). The variable font is pinned at weight 700 (bold reads better from
1.5 m), then cut to the characters needed, keeping the .notdef outline (the tofu test
compares every character's glyph with it).

After a translator adds a character, the tofu test (tests/display/test_fonts.py) fails
until this script is run again. The output is byte-for-byte reproducible for a given
fontTools version (no timestamps); the card records the hashes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
from pathlib import Path

from dispenser.service.messages import TEXTS

SOURCE_PACKAGE = "justmytype-intl-cjk"
SOURCE_FILE = "fonts/ofl/notosanssc/NotoSansSC[wght].ttf"
LICENCE_FILE = "fonts/ofl/notosanssc/OFL.txt"
WEIGHT = 700
HERE = Path(__file__).resolve().parent
FONT_NAME = "NotoSansSC-Bold-subset.ttf"
CARD_NAME = "NotoSansSC-Bold-subset.md"
LICENCE_NAME = "OFL-NotoSansSC.txt"


def characters() -> str:
    """Every character the screen may draw: printable ASCII and every message's text."""
    chars = {chr(c) for c in range(0x20, 0x7F)}
    for table in TEXTS.values():
        for text in table.values():
            chars.update(text)
    return "".join(sorted(chars))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make(out_dir: Path = HERE) -> Path:
    """Write the subset font, its licence and its card into `out_dir`; return the font."""
    from fontTools import subset, version
    from fontTools.ttLib import TTFont
    from fontTools.varLib import instancer

    package = importlib.resources.files("justmytype_intl_cjk")
    source = Path(str(package / SOURCE_FILE))
    font = TTFont(str(source), recalcTimestamp=False)
    font = instancer.instantiateVariableFont(font, {"wght": WEIGHT})
    options = subset.Options()
    options.notdef_outline = True     # the tofu test compares glyphs with .notdef
    options.hinting = False
    options.name_IDs = ["*"]          # keep copyright, licence and the reserved font name
    options.name_languages = ["*"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=characters())
    subsetter.subset(font)
    out = out_dir / FONT_NAME
    font.save(str(out))
    (out_dir / LICENCE_NAME).write_text(
        (package / LICENCE_FILE).read_text(encoding="utf-8"), encoding="utf-8")
    source_version = importlib.metadata.version(SOURCE_PACKAGE)
    card = f"""# {FONT_NAME}

The screen's bundled font (`dispenser.display.fonts`): Noto Sans SC, pinned at weight
{WEIGHT} and cut to printable ASCII plus every character of the messages in
`dispenser/service/messages.py` ({len(characters())} characters). The board can use the
full Noto Sans CJK SC from Debian's `fonts-noto-cjk` instead (`display.font = "auto"`).

| | |
|---|---|
| source package | `{SOURCE_PACKAGE}` {source_version} (PyPI) |
| source file | `{SOURCE_FILE}` |
| source sha256 | `{_sha256(source)}` |
| licence | SIL Open Font License 1.1 (`{LICENCE_NAME}`); Reserved Font Name "Source" |
| made with | fontTools {version}, `python -m dispenser.data.make_font_subset` |
| sha256 | `{_sha256(out)}` |
"""
    (out_dir / CARD_NAME).write_text(card, encoding="utf-8")
    return out


if __name__ == "__main__":
    print(make())

"""`dispenser display`: the visitor's screen without the machine.

    dispenser display --demo --out DIR [--size WxH] [--language zh+en|zh|en]

writes `DIR/<state>.png` for every screen state (docs/service.md shows them), drawn by the
same painter as the panel, with a drawn silhouette as the camera picture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dispenser.config import Settings, parse_size
from dispenser.errors import EXIT_OK, DispenserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--demo", action="store_true",
                        help="write a PNG of every screen state (needs --out)")
    parser.add_argument("--out", metavar="DIR", type=Path, default=None,
                        help="where the PNGs go")
    parser.add_argument("--size", metavar="WxH", default=None,
                        help="picture size (default: display.size, 800x480)")
    parser.add_argument("--language", choices=("zh+en", "zh", "en"), default=None,
                        help="default: display.language")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dispenser.display.demo import write_demo
    from dispenser.display.open import choose_display_font

    if not args.demo or args.out is None:
        raise DispenserError("display: nothing to do (use --demo --out DIR)")
    size = parse_size("--size", args.size or settings.display.size)
    language = args.language or settings.display.language
    font = choose_display_font(settings.display.font)
    for path in write_demo(args.out, size, language, font,
                           preview=settings.display.preview):
        print(path)
    return EXIT_OK

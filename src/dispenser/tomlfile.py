"""Reading a user's TOML file (configuration, crowd scenario) with one-line errors.

One place decides what a person sees when the file is missing, a folder, unreadable, not
UTF-8 or not TOML, so every file the program accepts fails the same, readable way:
`<what>: file not found: <path>`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from dispenser.errors import DispenserError


def read_toml(path: Path, what: str, error: type[DispenserError]) -> dict[str, Any]:
    """Parse `path`; raise `error` with one line starting `what:` if it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what}: file not found: {path}") from None
    except IsADirectoryError:
        raise error(f"{what}: {path} is a directory, not a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise error(f"{what}: cannot read {path}: {reason}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what}: {path} is not valid TOML: {exc}") from None

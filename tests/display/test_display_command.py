"""`dispenser display --demo`: a PNG of every screen state, at the size and in the
language asked for, and one-line errors for what it cannot do."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from dispenser.cli import main
from dispenser.display.screens import SCREENS


def test_demo_writes_every_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "screens"
    assert main(["display", "--demo", "--out", str(out), "--size", "480x320",
                 "--language", "en"]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{m.value}.png" for m in SCREENS)
    assert sorted(Path(p).name for p in printed) == names
    for name in names:
        image = cv2.imread(str(out / name))
        assert image is not None and image.shape == (320, 480, 3)


@pytest.mark.parametrize(("args", "expected"), [
    (["--demo"], "dispenser: error: display: nothing to do (use --demo --out DIR)"),
    (["--demo", "--out", "x", "--size", "huge"],
     "dispenser: error: config: --size = 'huge' is not a size (expected WxH, e.g. 800x480, "
     "each side 16..8192)"),
])
def test_bad_requests_are_one_line(args: list[str], expected: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["display", *args]) == 2
    assert capsys.readouterr().err.strip() == expected

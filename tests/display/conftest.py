"""Fixtures of the screen tests: the bundled font, and a fake panel (a framebuffer file
plus the sysfs directory that describes it; panel_doubles.py, imported by module name:
tests/ is not a package)."""

from __future__ import annotations

from pathlib import Path

import pytest
from panel_doubles import FakePanel

from dispenser.display.fonts import FontFile, choose_font


@pytest.fixture(scope="session")
def font() -> FontFile:
    return choose_font("bundled")


@pytest.fixture
def fake_panel(tmp_path: Path) -> FakePanel:
    """make(width, height, bpp, stride=None) -> (device file, sysfs root)."""

    def make(width: int, height: int, bpp: int, stride: int | None = None,
             name: str = "fb0") -> tuple[Path, Path]:
        stride = stride if stride is not None else width * bpp // 8
        sysfs = tmp_path / "sys" / "class" / "graphics"
        node = sysfs / name
        node.mkdir(parents=True, exist_ok=True)
        (node / "virtual_size").write_text(f"{width},{height}\n")
        (node / "bits_per_pixel").write_text(f"{bpp}\n")
        (node / "stride").write_text(f"{stride}\n")
        device = tmp_path / "dev" / name
        device.parent.mkdir(exist_ok=True)
        device.write_bytes(bytes(stride * height))
        return device, sysfs

    return make

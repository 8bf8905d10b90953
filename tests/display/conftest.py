"""Fixtures of the screen tests: the bundled font, and a fake panel (a framebuffer file
plus the sysfs directory that describes it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from dispenser.display.fonts import FontFile, choose_font


@pytest.fixture(scope="session")
def font() -> FontFile:
    return choose_font("bundled")


FakePanel = Callable[..., tuple[Path, Path]]


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


def read_panel(device: Path, width: int, height: int, bpp: int, stride: int) -> np.ndarray:
    """The panel's pixels back as RGB (RGB565 widened: low bits zero)."""
    raw = np.frombuffer(device.read_bytes(), np.uint8)[:stride * height].reshape(height,
                                                                                stride)
    if bpp == 32:
        px = raw[:, :width * 4].reshape(height, width, 4)
        return px[:, :, 2::-1].copy()                 # B G R X -> R G B
    v = raw[:, :width * 2].copy().view(np.uint16).reshape(height, width).astype(np.uint32)
    return np.stack([(v >> 11) << 3, ((v >> 5) & 63) << 2, (v & 31) << 3], 2).astype(np.uint8)

"""The fake panel's type and a reader of what it shows (the screen tests' helpers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

FakePanel = Callable[..., tuple[Path, Path]]   # make(width, height, bpp, ...) -> paths


def read_panel(device: Path, width: int, height: int, bpp: int, stride: int) -> np.ndarray:
    """The panel's pixels back as RGB (RGB565 widened: low bits zero)."""
    raw = np.frombuffer(device.read_bytes(), np.uint8)[:stride * height].reshape(height,
                                                                                stride)
    if bpp == 32:
        px = raw[:, :width * 4].reshape(height, width, 4)
        return px[:, :, 2::-1].copy()                 # B G R X -> R G B
    v = raw[:, :width * 2].copy().view(np.uint16).reshape(height, width).astype(np.uint32)
    return np.stack([(v >> 11) << 3, ((v >> 5) & 63) << 2, (v & 31) << 3], 2).astype(np.uint8)

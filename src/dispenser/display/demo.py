"""`dispenser display --demo`: a PNG of every screen state, for the docs and for review.

The camera picture in the demo is drawn, not photographed: a plain wall and a grey
head-and-shoulders silhouette in the guide, so the PNGs show where a visitor's picture
goes without anyone's face in them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dispenser.display.fonts import FontFile
from dispenser.display.painter import Painter
from dispenser.display.screens import SCREENS
from dispenser.service.messages import Message

DEMO_PROGRESS = 0.65        # the hold-still ring in the demo, part filled


def _cv2() -> Any:
    import cv2

    return cv2


def silhouette_frame(width: int = 640, height: int = 480) -> np.ndarray:
    """A BGR "camera frame" with a silhouette where a face would be (no person in it)."""
    cv2 = _cv2()
    ramp = np.linspace(70, 120, height, dtype=np.float32)[:, None]
    frame = np.repeat(np.repeat(ramp, width, axis=1)[:, :, None], 3, axis=2)
    frame = (frame * np.array([1.0, 0.95, 0.85], np.float32)).astype(np.uint8)
    cx = width // 2
    cv2.ellipse(frame, (cx, height), (width // 3, height // 4), 0, 180, 360,
                (150, 150, 150), -1, cv2.LINE_AA)
    cv2.ellipse(frame, (cx, height * 9 // 20), (width // 9, height // 5), 0, 0, 360,
                (175, 175, 175), -1, cv2.LINE_AA)
    return frame


def demo_states() -> list[tuple[Message, float | None]]:
    """Every screen state, with the progress it is shown at."""
    return [(m, DEMO_PROGRESS if m is Message.HOLD_STILL else None) for m in SCREENS]


def write_demo(out: Path, size: tuple[int, int], language: str, font: FontFile, *,
               preview: bool = True) -> list[Path]:
    """Write `<state>.png` for every screen state into `out`; return the paths."""
    cv2 = _cv2()
    out.mkdir(parents=True, exist_ok=True)
    frame = silhouette_frame()
    written = []
    for message, progress in demo_states():
        painter = Painter(size[0], size[1], font, language, preview=preview)
        try:
            painter.paint(message, progress, frame)
            path = out / f"{message.value}.png"
            if not cv2.imwrite(str(path), painter.canvas,
                               [cv2.IMWRITE_PNG_COMPRESSION, 9]):
                from dispenser.errors import DispenserError

                raise DispenserError(f"display: cannot write {path}")
            written.append(path)
        finally:
            painter.close()
    return written

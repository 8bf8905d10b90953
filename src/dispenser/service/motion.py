"""The idle-time presence check: is it worth running the face detector on this frame?

Why: with nobody in front of the machine (most of the day) the detector would burn a CPU
core for nothing. While idle the service asks `MotionGate.should_detect` on every frame;
it answers yes only if the scene changed since the frame the detector last looked at
(mean absolute difference of a tiny grey thumbnail above `threshold`) and the idle
detection rate (`vision.idle_detect_hz`) allows it.

The reference is the thumbnail of the last *detected* frame, not the previous frame: a
person who walks in slowly, or walks in and then stands perfectly still between two
checks, still differs from the empty scene the detector last saw. As a safety net against
a change too small to pass the threshold (someone far away, low contrast), the detector
also runs at least every `max_gap_s`. The thumbnail (32x24 grey) holds no usable face; it
is overwritten in place.

The threshold: each thumbnail pixel averages ~400 camera pixels, so sensor noise (a few
grey levels) averages out to ~0.1; a face-sized change covering an eighth of the frame
with 20 grey levels of contrast moves the mean by ~2.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

THUMB_SIZE = (32, 24)  # (width, height)


def _cv2() -> Any:
    import cv2

    return cv2


class MotionGate:
    """Rate limit + scene-change test for detection while idle."""

    def __init__(self, idle_detect_hz: float, threshold: float = 1.5,
                 max_gap_s: float = 10.0) -> None:
        self._min_interval = 1.0 / idle_detect_hz
        self._max_gap = max(max_gap_s, self._min_interval)
        self._threshold = threshold
        self._current = np.zeros((THUMB_SIZE[1], THUMB_SIZE[0]), np.float32)
        self._reference = np.zeros_like(self._current)
        self._has_reference = False
        self._last_detect_at: float | None = None
        self._last_check_at: float | None = None

    def should_detect(self, frame_bgr: np.ndarray, now: float) -> bool:
        """True if the detector should run on this frame (call `detected` if it does).
        The scene itself is looked at no more often than the idle detection rate either."""
        if self._last_check_at is not None and now - self._last_check_at < self._min_interval:
            return False
        self._last_check_at = now
        since = None if self._last_detect_at is None else now - self._last_detect_at
        self._thumbnail(frame_bgr)
        if not self._has_reference or since is None or since >= self._max_gap:
            return True
        return self.change() > self._threshold

    def change(self) -> float:
        """Mean absolute grey-level difference (0-255) between the last thumbnail and the
        reference."""
        return float(np.mean(np.abs(self._current - self._reference)))

    def detected(self, now: float) -> None:
        """The detector ran on the last thumbnailed frame: it becomes the reference."""
        self._reference[...] = self._current
        self._has_reference = True
        self._last_detect_at = now

    def reset(self) -> None:
        """Forget the reference (after a camera re-open the scene may differ)."""
        self._has_reference = False
        self._last_detect_at = None
        self._last_check_at = None

    def _thumbnail(self, frame_bgr: np.ndarray) -> None:
        cv2 = _cv2()
        small = cv2.resize(frame_bgr, THUMB_SIZE, interpolation=cv2.INTER_AREA)
        self._current[...] = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)

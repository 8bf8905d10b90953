"""Generated head motion for the hold-still tests (imported by module name).

A `Head` is what the detector would report, frame by frame, for one person: a box, a score
and the 5 landmarks, projected from a 3D mean face that sways, turns, talks and blinks, on
the caller's (virtual) clock. `GeneratedPipeline` hands those to the service as `Face`s
whose quality verdict comes from the real gate (`assess_faces`) on a textured, well lit
frame, so the pose limits and the score floor the service sees are the shipped ones. No
real face is involved anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from dispenser.vision.detector import Detection
from dispenser.vision.face import Face
from dispenser.vision.quality import assess_faces

FRAME_SIZE = (480, 640)   # (height, width) of the camera picture the boxes live in

# A mean face in eye-distance units: x to the image right, y down, z towards the camera.
# The nose tip stands 0.45 eye distances in front of the eyes, so a head turned by t
# degrees shows a yaw ratio of 0.45 * tan(t).
MEAN_FACE = np.array([[-0.5, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.6, 0.45],
                      [-0.4, 1.1, 0.1], [0.4, 1.1, 0.1]])
BOX_CENTRE = np.array([0.0, 0.45, 0.0])   # where the detector's box is centred
BOX_WIDTHS = (2.2, 2.5)                   # box width and height in eye distances


@dataclass(frozen=True)
class Behaviour:
    """How a generated person moves. Defaults: standing at the machine, the way people do."""

    sway: float = 0.08            # slow head sway, amplitude in face widths
    jitter: float = 0.02          # detector box noise per frame, sd in face widths
    size_jitter: float = 0.03     # detector width noise per frame, relative sd
    wobble_deg: float = 8.0       # slow yaw / pitch / roll wobble, amplitude in degrees
    talk_hz: float = 4.0          # mouth opening and closing (0: silent)
    blink_every_s: float = 2.0    # a blink: eye points drop, score 0.9 (fails the gate)
    blink_s: float = 0.2
    glance_every_s: float = 3.5   # a quick look aside (35 degrees) ...
    glance_s: float = 0.3         # ... this long
    dropout: float = 0.05         # share of frames the detector misses
    walk: float = 0.0             # face widths per second across the picture
    turns: tuple[tuple[float, float, float, float], ...] = ()
    """(from_s, to_s, yaw_deg, pitch_deg): the head is held turned in that interval."""


def _rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    y, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return np.asarray(rz @ rx @ ry)


class Head:
    """One generated person; `detection(t)` is the detector's view at clock time `t`
    (seconds since the head appeared), or None for a frame the detector misses."""

    def __init__(self, behaviour: Behaviour, seed: int, *, eye_px: float = 60.0,
                 start: tuple[float, float] = (320.0, 200.0)) -> None:
        self.behaviour = behaviour
        self.eye_px = eye_px
        self.start = start
        self._rng = np.random.default_rng(seed)
        phases = self._rng.uniform(0, 2 * math.pi, 8)
        self._phases = phases
        self._freqs = self._rng.uniform(0.15, 0.6, 8)      # slow sway and wobble, Hz
        self._blink_at = self._rng.uniform(0, behaviour.blink_every_s)
        self._glance_at = self._rng.uniform(1.0, behaviour.glance_every_s)

    @property
    def width_px(self) -> float:
        return BOX_WIDTHS[0] * self.eye_px

    def _slow(self, i: int, t: float) -> float:
        return math.sin(2 * math.pi * self._freqs[i] * t + self._phases[i])

    def _in_event(self, t: float, first: float, every: float, length: float) -> bool:
        return t >= first and (t - first) % every < length

    def pose(self, t: float) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees at `t`."""
        b = self.behaviour
        yaw, pitch, roll = (b.wobble_deg * self._slow(i, t) for i in (3, 4, 5))
        for first, last, turn_yaw, turn_pitch in b.turns:
            if first <= t < last:
                yaw, pitch = yaw + turn_yaw, pitch + turn_pitch
        if self._in_event(t, self._glance_at, b.glance_every_s, b.glance_s):
            yaw += 35.0
        return yaw, pitch, roll

    def detection(self, t: float) -> Detection | None:
        b, rng = self.behaviour, self._rng
        if rng.random() < b.dropout:
            return None
        width = self.width_px
        cx = self.start[0] + width * (b.walk * t + b.sway * self._slow(0, t)
                                      + b.jitter * rng.standard_normal())
        if not 0.0 <= cx <= FRAME_SIZE[1]:
            return None                     # walked out of the picture
        cy = self.start[1] + width * (b.sway / 2 * self._slow(1, t)
                                      + b.jitter * rng.standard_normal())
        scale = self.eye_px * (1.0 + 0.03 * self._slow(2, t))
        points = MEAN_FACE.copy()
        if b.talk_hz > 0:
            points[3:, 1] += 0.15 * max(0.0, math.sin(2 * math.pi * b.talk_hz * t))
        blinking = self._in_event(t, self._blink_at, b.blink_every_s, b.blink_s)
        if blinking:
            points[:2, 1] += 0.08
        rotated = (points - BOX_CENTRE) @ _rotation(*self.pose(t)).T
        landmarks = rotated[:, :2] * scale + np.array([cx, cy])
        half_w = width / 2 * (1.0 + b.size_jitter * rng.standard_normal())
        half_h = half_w * BOX_WIDTHS[1] / BOX_WIDTHS[0]
        return Detection(box=(cx - half_w, cy - half_h, cx + half_w, cy + half_h),
                         score=0.9 if blinking else 0.999,
                         landmarks=landmarks.astype(np.float32))


def textured_grey(seed: int = 0) -> np.ndarray:
    """A well lit, sharp grey picture: what the gate measures sharpness and light on."""
    noise = np.random.default_rng(seed).normal(128.0, 40.0, FRAME_SIZE)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 1.0), 0, 255).astype(np.uint8)


class GeneratedPipeline:
    """The service's pipeline port over generated heads: `detect` reports every head's
    detection for the current clock time (relative to `t0`), judged by the real gate;
    `embed` writes one fixed unit template (this is about timing, not identity)."""

    def __init__(self, heads: Sequence[Head], clock_now: object, t0: float) -> None:
        self._heads = heads
        self._now = clock_now
        self._t0 = t0
        self._grey = textured_grey()

    def detect(self, frame: np.ndarray) -> list[Face]:
        t = float(self._now()) - self._t0  # type: ignore[operator]
        found = [d for d in (h.detection(t) for h in self._heads) if d is not None]
        reports = assess_faces(self._grey, found)
        return [Face(box=d.box, score=d.score, landmarks=d.landmarks, quality=q)
                for d, q in zip(found, reports, strict=True)]

    def embed(self, frame: np.ndarray, face: Face, out: np.ndarray) -> None:
        out[:] = 0.0
        out[0] = 1.0

    def scrub(self) -> None:
        pass  # no network, no activations

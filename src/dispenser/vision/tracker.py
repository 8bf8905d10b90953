"""Follow faces from frame to frame, and say how long each has held still.

The machine decides only after one person has stood still, facing it, for
`settings.vision.hold_still_s` (3 s): that gives the quality gate several frames to agree
and stops a passer-by from being scanned. This module supplies the two facts the service
needs for that: which face in this frame is the same as in the last one (a track id), and
for how long that face has been steady and of good quality (`steady_s`).

Association is greedy on box overlap (IoU), best pairs first, and a pair is refused when
the landmarks moved too far for the box's size (a different face whose box happens to
overlap, e.g. someone leaning in front); a face that matches no live track starts a new
one. Steadiness is measured against an *anchor* (the box where the current still period
began), not frame to frame, so it does not depend on the frame rate: slow drift adds up
and resets it as surely as a jump does. Time comes from the injected clock only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from dispenser.clock import Clock
from dispenser.vision.face import Face

MIN_IOU: Final = 0.3
"""Overlap a face needs with a track's last box to continue it. At 5-15 fps a person
standing in front of the machine overlaps their previous box by far more; two people side
by side overlap by far less."""

MAX_LANDMARK_SHIFT: Final = 0.5
"""A face continues a track only if its landmarks moved, on average, by at most this
fraction of the track's box width since the last frame: far more than a person moves
between frames, far less than the distance between two different faces' eyes."""

MAX_CENTRE_SHIFT: Final = 0.15
"""Steady means the box centre stays within this fraction of the box width of the anchor
(about a quarter of the eye distance): small sway passes, turning or walking does not."""

MAX_SIZE_CHANGE: Final = 0.15
"""...and the box width within this fraction of the anchor's (walking towards the camera)."""

LOST_AFTER_FRAMES: Final = 5
"""A track is lost after this many consecutive frames without its face..."""

LOST_AFTER_S: Final = 1.0
"""...or this long without it, whichever comes first (a frame rate drop must not keep a
departed person's track alive)."""


@dataclass(frozen=True, eq=False)
class Track:
    """A snapshot of one tracked face after an `update`.

    id: unique per tracker, never reused; face: the latest detection of it (from an earlier
    frame when `missed` > 0); steady_s: how long it has been steady with quality ok (0 while
    failing the gate; restarts from 0 when it moves; a gap of fewer than the lost limits
    does not interrupt it, so decide only on a track with missed == 0); lost: the face is
    gone for good (reported once, then the track is dropped); missed: consecutive updates
    without its face (0 = in this frame).
    """

    id: int
    face: Face
    steady_s: float
    lost: bool
    missed: int


@dataclass
class _State:
    id: int
    face: Face
    anchor: Face
    steady_since: float | None  # None while quality fails
    last_seen: float
    missed: int = 0


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes (0 when either is empty)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def landmark_shift(previous: Face, face: Face) -> float:
    """Mean landmark displacement between two faces, in widths of `previous`'s box."""
    if previous.width <= 0:
        return float("inf")
    moved = np.linalg.norm(face.landmarks.astype(np.float64) - previous.landmarks, axis=1)
    return float(moved.mean()) / previous.width


def is_still(anchor: Face, face: Face) -> bool:
    """True if `face` is within the steadiness bounds of `anchor`."""
    size = anchor.width
    if size <= 0:
        return False
    (ax, ay), (fx, fy) = anchor.centre, face.centre
    shift = math.hypot(fx - ax, fy - ay) / size
    return shift <= MAX_CENTRE_SHIFT and abs(face.width - size) / size <= MAX_SIZE_CHANGE


class FaceTracker:
    """Track ids and hold-still time across frames. One caller at a time."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._tracks: list[_State] = []
        self._next_id = 1

    def update(self, faces: Sequence[Face]) -> list[Track]:
        """Associate this frame's faces with the live tracks; returns every live track,
        plus (once) each track that became lost in this update."""
        now = self._clock.now()
        pairs = sorted(((iou(t.face.box, f.box), ti, fi)
                        for ti, t in enumerate(self._tracks) for fi, f in enumerate(faces)),
                       reverse=True)
        used_tracks: set[int] = set()
        used_faces: set[int] = set()
        for overlap, ti, fi in pairs:
            if overlap < MIN_IOU:
                break
            if ti in used_tracks or fi in used_faces \
                    or landmark_shift(self._tracks[ti].face, faces[fi]) > MAX_LANDMARK_SHIFT:
                continue
            used_tracks.add(ti)
            used_faces.add(fi)
            self._continue(self._tracks[ti], faces[fi], now)
        out: list[Track] = []
        alive: list[_State] = []
        for ti, state in enumerate(self._tracks):
            if ti not in used_tracks:
                # A detection can drop out for a frame while the person stands still: the
                # still period survives short gaps; movement is judged when the face returns.
                state.missed += 1
            lost = state.missed >= LOST_AFTER_FRAMES or now - state.last_seen >= LOST_AFTER_S
            out.append(self._snapshot(state, now, lost))
            if not lost:
                alive.append(state)
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                state = _State(id=self._next_id, face=face, anchor=face,
                               steady_since=now if face.quality.ok else None, last_seen=now)
                self._next_id += 1
                alive.append(state)
                out.append(self._snapshot(state, now, lost=False))
        self._tracks = alive
        return out

    def reset(self) -> None:
        """Forget every track (after a decision, so the next person starts from zero)."""
        self._tracks = []

    @staticmethod
    def _continue(state: _State, face: Face, now: float) -> None:
        state.face, state.last_seen, state.missed = face, now, 0
        if not face.quality.ok:
            state.steady_since, state.anchor = None, face
        elif state.steady_since is None or not is_still(state.anchor, face):
            state.steady_since, state.anchor = now, face

    @staticmethod
    def _snapshot(state: _State, now: float, lost: bool) -> Track:
        steady = 0.0 if lost or state.steady_since is None else now - state.steady_since
        return Track(id=state.id, face=state.face, steady_s=steady, lost=lost,
                     missed=state.missed)

"""Follow faces from frame to frame, and say how long each has held still.

The machine decides only after one person has stood still, facing it, for
`settings.vision.hold_still_s` (3 s): that gives the quality gate several frames to agree
and stops a passer-by from being scanned. This module supplies the two facts the service
needs for that: which face in this frame is the same as in the last one (a track id), and
for how long that face has been steady and of good quality (`steady_s`).

Association is greedy on box overlap (IoU), best pairs first, and a pair is refused when
the landmarks moved too far for the box's size (a different face whose box happens to
overlap, e.g. someone leaning in front); a face that matches no live track starts a new
one.

Steady is what a person standing at the machine does, talking, blinking and swaying
a little, and not what a person walking past or turning away does. So it is judged on
the box *smoothed* over a quarter of a second, against an *anchor* (the smoothed box where
the still period began), with bounds relative to the face's size; a short run of frames
failing the quality gate (a blink, an open mouth, a glance) or missing the detection does
not end it, a sustained one does. Everything is measured in clock time, not frames, so it
does not depend on the frame rate. Time comes from the injected clock only.
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

MOTION_SMOOTHING_S: Final = 0.25
"""Steadiness is judged on the box smoothed over about this long (an exponential moving
average of centre and width, weighted by the time between frames, so it does not depend on
the frame rate). The detector's box jitters by 1-5 % of its width from frame to frame and
talking or blinking moves it more for a frame or two; smoothing over a quarter of a second
takes that out while a person walking past (several face widths per second) still moves it
almost at once."""

MAX_DRIFT: Final = 0.45
"""Steady means the smoothed box centre stays within this fraction of the box width of the
anchor (the smoothed box where the still period began). People standing at a machine and
talking sway their head by 0.1-0.25 widths over 3 s, and one settling in front of it (or
turning the head while doing so) moves about 0.4 widths in the first second or two: a
bound of 0.35 or 0.40 restarted one tuning clip's hold (decided after 4.2-4.5 s; 3.7 s at
0.45, docs/vision.md); one step or walking past moves it by several widths a second. Slow
drift adds up, so leaning away restarts the period as surely as a jump does."""

MAX_SIZE_CHANGE: Final = 0.25
"""...and the smoothed box width within this fraction of the anchor's: a step towards or
away from the camera changes it by far more; the detector's width jitter and a talking
head, smoothed, change it by up to ~0.15 over 3 s."""

QUALITY_GRACE_S: Final = 0.6
"""The still period survives the face failing the quality gate for less than this (counted
from the last frame that passed): a blink, an open mouth, a quick glance aside or a frame
of motion blur last a tenth to a few tenths of a second. Failing for longer (turned away,
looking down at a phone, walked off into the dark) ends it. Only frames that pass the gate
are embedded or decided on, so the grace lets no bad template in."""

LOST_AFTER_FRAMES: Final = 5
"""A track is lost after this many consecutive frames without its face..."""

LOST_AFTER_S: Final = 1.0
"""...or this long without it, whichever comes first (a frame rate drop must not keep a
departed person's track alive)."""


@dataclass(frozen=True, eq=False)
class Track:
    """A snapshot of one tracked face after an `update`.

    id: unique per tracker, never reused; face: the latest detection of it (from an earlier
    frame when `missed` > 0); steady_s: how long it has been steady, facing the camera (0
    until its face passes the quality gate, and again once it has failed it for
    `QUALITY_GRACE_S` or moved beyond `MAX_DRIFT` / `MAX_SIZE_CHANGE`; neither a shorter run
    of failing frames nor a detection gap shorter than the lost limits interrupts it, so
    embed and decide only on a track with missed == 0 whose face passes the gate); lost: the
    face is gone for good (reported once, then the track is dropped); missed: consecutive
    updates without its face (0 = in this frame).
    """

    id: int
    face: Face
    steady_s: float
    lost: bool
    missed: int


@dataclass(frozen=True)
class SmoothedBox:
    """A track's box centre and width, smoothed over `MOTION_SMOOTHING_S`."""

    cx: float
    cy: float
    width: float

    @staticmethod
    def of(face: Face) -> SmoothedBox:
        cx, cy = face.centre
        return SmoothedBox(cx, cy, face.width)

    def follow(self, face: Face, dt: float) -> SmoothedBox:
        """This box moved towards `face` by the share of the way `dt` seconds earn."""
        weight = 1.0 - math.exp(-max(dt, 0.0) / MOTION_SMOOTHING_S)
        cx, cy = face.centre
        return SmoothedBox(self.cx + weight * (cx - self.cx),
                           self.cy + weight * (cy - self.cy),
                           self.width + weight * (face.width - self.width))


@dataclass
class _State:
    id: int
    face: Face
    smoothed: SmoothedBox
    anchor: SmoothedBox
    steady_since: float | None  # None while not steady
    passed_at: float | None     # when its face last passed the quality gate
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


def is_still(anchor: SmoothedBox, box: SmoothedBox) -> bool:
    """True if the smoothed `box` is within the steadiness bounds of `anchor`."""
    size = anchor.width
    if size <= 0:
        return False
    shift = math.hypot(box.cx - anchor.cx, box.cy - anchor.cy) / size
    return shift <= MAX_DRIFT and abs(box.width - size) / size <= MAX_SIZE_CHANGE


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
                box = SmoothedBox.of(face)
                ok = face.quality.ok
                state = _State(id=self._next_id, face=face, smoothed=box, anchor=box,
                               steady_since=now if ok else None,
                               passed_at=now if ok else None, last_seen=now)
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
        state.smoothed = state.smoothed.follow(face, now - state.last_seen)
        state.face, state.last_seen, state.missed = face, now, 0
        ok = face.quality.ok
        if ok:
            state.passed_at = now
        if state.passed_at is None or now - state.passed_at >= QUALITY_GRACE_S:
            state.steady_since = None   # failing the gate for too long (or never passed)
        elif state.steady_since is None or not is_still(state.anchor, state.smoothed):
            # (Re)start the still period here, where the person is now; a face failing
            # the gate starts one only once it passes.
            state.steady_since = now if ok else None
            state.anchor = state.smoothed

    @staticmethod
    def _snapshot(state: _State, now: float, lost: bool) -> Track:
        steady = 0.0 if lost or state.steady_since is None else now - state.steady_since
        return Track(id=state.id, face=state.face, steady_s=steady, lost=lost,
                     missed=state.missed)

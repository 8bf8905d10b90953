"""The quality gate: is this detected face good enough to turn into a template?

A template made from a small, blurred, badly lit or turned face is further from the same
person's other templates, so it either fails to deny a repeat visitor or (worse, with a
loose threshold) matches a stranger. The gate therefore refuses such faces *before*
embedding, with a reason code the display turns into advice ("come closer", "look at the
camera", "too dark"). Checks run in the order of `assess_faces`; the first failure is the
reason. Measurements are computed on the face region only, resampled to a fixed size so
that they do not depend on how large the face is in the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt

from dispenser.vision import face as codes
from dispenser.vision.detector import Detection
from dispenser.vision.face import QualityReport

MIN_SCORE: Final = 0.95
"""O-Net already drops < 0.7; between 0.7 and 0.95 are mostly half-hidden or strongly
turned faces and face-like clutter, whose templates are unreliable."""

MIN_INTER_OCULAR_PX: Final = 28.0
"""The SFace chip puts the eye centres ~35 px apart (dlib's ~54); faces shrunk until the
eyes are 20-40 px apart give templates that agree with the same person's full-size
frontal ones as well as unshrunk frames do, and no better with anyone else's
(bench/quality_limits.py, docs/vision.md "The quality limits"). 28 keeps a margin for what
shrinking a frame does not show (a far face's focus and noise; the blur check catches the
worst) and keeps the scan to people at the machine: about 1.4 m from a typical 60-70
degree webcam at 640x480."""

MAX_YAW_RATIO: Final = 0.30
"""Horizontal offset of the nose tip from the eye midpoint, over the eye distance: about
0 facing the camera, (nose depth / eye distance) x tan(turn) otherwise, i.e. 0.4-0.5 at
45 degrees. 0.30 is a turn of roughly 30-35 degrees (less for a flatter nose). People
standing at a machine and talking sit mostly below 0.2 with glances beyond. Measured with
SFace (docs/vision.md "The quality limits"): up to 0.25 nearly every frame's template
agrees with the same person's frontal ones above the refusal threshold (3 % miss at
0.25-0.30, none of the 3-frame probes); from 0.30 to 0.40, 6-8 % of frames fall below it
(a repeat-take missed), from 0.40 most do, and other people's photos turned 0.30-0.35
reach the refusal threshold more often than frontal ones. So it stays at 0.30: beyond it
a face is turned away."""

PITCH_RATIO_RANGE: Final = (0.30, 0.85)
"""Nose tip height between eye line (0) and mouth line (1). Facing the camera it is ~0.4-
0.7 with MTCNN's landmarks (0.67 on the astronaut photo); talking lowers it (an open mouth
moves the mouth line down) to ~0.32 at times; a head tipped far up or down pushes it out of
this range."""

MAX_ROLL_DEG: Final = 30.0
"""Tilt of the eye line. Alignment undoes roll, and people tilt their head by 20-30 degrees
while talking; beyond that a head is usually also turned, and the detector's landmarks get
less accurate there."""

BRIGHTNESS_RANGE: Final = (40.0, 210.0)
"""Mean grey level of the face region (0-255). Outside it, the face is under- or
over-exposed enough that the embedder sees mostly noise or washed-out skin. The floor is
measured with SFace on frontal faces darkened (gain and sensor noise): down to a mean of
25 their templates agree with the same person's as reliably as at normal light, and no
better with anyone else's; below 25 some fall under the refusal threshold (docs/vision.md
"The quality limits"). 40 keeps a margin. A dim face also loses contrast, which the
sharpness check measures, so a dim face that is also soft fails as blurry."""

MAX_CLIPPED_FRACTION: Final = 0.20
"""Share of face pixels at <= 5 or >= 250 (crushed shadows or blown highlights). A harsh
side light can leave the mean fine while a fifth of the face carries no information."""

MIN_SHARPNESS: Final = 60.0
"""Variance of the Laplacian of the face region resampled to 96x96 grey. A sharp, in-focus
face is a few hundred (~500 on the astronaut photo); a Gaussian defocus of sigma 2 px at
43 px eye distance drops it to ~20 (tests/vision/test_quality.py)."""

DOMINANCE_AREA_RATIO: Final = 2.0
"""Several faces are acceptable only if the largest is at least this many times the area of
the next: a person close to the machine with someone far behind. Two similar-sized faces
mean we cannot tell whose turn it is."""

SHARPNESS_SIDE: Final = 96
"""Side of the square the face region is resampled to before measuring (fixed so that the
Laplacian variance is comparable between near and far faces)."""


def pose_ratios(landmarks: npt.NDArray[np.float32]) -> tuple[float, float, float, float]:
    """(inter-ocular px, yaw ratio, pitch ratio, roll degrees) from the 5 landmarks."""
    pts = landmarks.astype(np.float64)
    left_eye, right_eye, nose, mouth_l, mouth_r = pts
    eye_vec = right_eye - left_eye
    iod = float(math.hypot(*eye_vec))
    if iod < 1e-6:
        return 0.0, math.inf, math.inf, 0.0
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    # Express the nose in the face's own frame: x along the eye line, y perpendicular.
    along, across = eye_vec / iod, np.array([-eye_vec[1], eye_vec[0]]) / iod
    eye_mid, mouth_mid = (left_eye + right_eye) / 2, (mouth_l + mouth_r) / 2
    yaw = float(np.dot(nose - eye_mid, along)) / iod
    mouth_depth = float(np.dot(mouth_mid - eye_mid, across))
    pitch = float(np.dot(nose - eye_mid, across)) / mouth_depth if mouth_depth > 1e-6 \
        else math.inf
    return iod, yaw, pitch, roll


def region_stats(grey: npt.NDArray[np.uint8], box: tuple[float, float, float, float]
                 ) -> tuple[float, float, float]:
    """(sharpness, mean brightness, clipped fraction) of the face box clipped to the image."""
    height, width = grey.shape
    x0, y0 = max(math.floor(box[0]), 0), max(math.floor(box[1]), 0)
    x1, y1 = min(math.ceil(box[2]), width), min(math.ceil(box[3]), height)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0, 0.0, 1.0
    patch = cv2.resize(grey[y0:y1, x0:x1], (SHARPNESS_SIDE, SHARPNESS_SIDE),
                       interpolation=cv2.INTER_AREA)
    try:
        laplacian = cv2.Laplacian(patch, cv2.CV_32F)
        sharpness = float(laplacian.var())
        laplacian.fill(0)
        brightness = float(patch.mean())
        clipped = float(np.count_nonzero((patch <= 5) | (patch >= 250))) / patch.size
    finally:
        patch.fill(0)
    return sharpness, brightness, clipped


@dataclass(frozen=True)
class GateLimits:
    """The gate's limits in one value, the module constants by default; measurement
    scripts (bench/quality_limits.py) judge the same measurements with one limit lifted."""

    min_score: float = MIN_SCORE
    min_inter_ocular_px: float = MIN_INTER_OCULAR_PX
    max_yaw_ratio: float = MAX_YAW_RATIO
    pitch_ratio_range: tuple[float, float] = PITCH_RATIO_RANGE
    max_roll_deg: float = MAX_ROLL_DEG
    brightness_range: tuple[float, float] = BRIGHTNESS_RANGE
    max_clipped_fraction: float = MAX_CLIPPED_FRACTION
    min_sharpness: float = MIN_SHARPNESS


LIMITS: Final = GateLimits()

SHARP_ENOUGH: Final = 2 * MIN_SHARPNESS
"""Above this Laplacian variance a frame counts as fully sharp when frames are ranked."""


def frame_rank(m: QualityReport, limits: GateLimits = LIMITS) -> float:
    """How good a passing face is to embed, 0 (worst) to 1: (1 - |yaw| / yaw limit) x
    min(sharpness / SHARP_ENOUGH, 1). The detector's score cannot choose a hold's frames
    (it is ~1.0 on nearly every face that passes the gate), while the template of a face
    turned further agrees less with the same person's other templates (docs/vision.md);
    among sharp frames the most frontal wins, and one near the blur floor counts half."""
    frontal = 1.0 - min(abs(m.yaw_ratio) / limits.max_yaw_ratio, 1.0)
    return frontal * min(m.sharpness / SHARP_ENOUGH, 1.0)


def gate_reason(m: QualityReport, score: float, dominant: bool,
                limits: GateLimits = LIMITS) -> str:
    """The reason code for a face with measurements `m` (its `ok` and `reason` are not
    read) and detector `score`: the first failing check in the gate's order, or OK."""
    pitch_low, pitch_high = limits.pitch_ratio_range
    dark, bright = limits.brightness_range
    checks = (
        (not dominant, codes.SEVERAL_FACES),
        (score < limits.min_score, codes.LOW_SCORE),
        (m.inter_ocular_px < limits.min_inter_ocular_px, codes.TOO_SMALL),
        (abs(m.yaw_ratio) > limits.max_yaw_ratio or abs(m.roll_deg) > limits.max_roll_deg
         or not pitch_low <= m.pitch_ratio <= pitch_high, codes.NOT_FRONTAL),
        (m.brightness < dark, codes.TOO_DARK),
        (m.brightness > bright, codes.TOO_BRIGHT),
        (m.clipped_fraction > limits.max_clipped_fraction,
         codes.TOO_DARK if m.brightness < 128 else codes.TOO_BRIGHT),
        (m.sharpness < limits.min_sharpness, codes.BLURRY),
    )
    return next((code for failed, code in checks if failed), codes.OK)


def _verdict(det: Detection, grey: npt.NDArray[np.uint8], dominant: bool) -> QualityReport:
    iod, yaw, pitch, roll = pose_ratios(det.landmarks)
    sharpness, brightness, clipped = region_stats(grey, det.box)
    measured = QualityReport(ok=False, reason="", inter_ocular_px=iod, sharpness=sharpness,
                             brightness=brightness, clipped_fraction=clipped,
                             yaw_ratio=yaw, pitch_ratio=pitch, roll_deg=roll)
    reason = gate_reason(measured, det.score, dominant)
    return replace(measured, ok=reason == codes.OK, reason=reason,
                   frame_rank=frame_rank(measured))


def dominant_index(detections: Sequence[Detection]) -> int | None:
    """Index of the one face that clearly dominates the frame by area, or None."""
    if not detections:
        return None
    areas = [max(d.box[2] - d.box[0], 0.0) * max(d.box[3] - d.box[1], 0.0)
             for d in detections]
    order = sorted(range(len(areas)), key=areas.__getitem__, reverse=True)
    if len(order) > 1 and areas[order[0]] < DOMINANCE_AREA_RATIO * areas[order[1]]:
        return None
    return order[0]


def assess_faces(grey: npt.NDArray[np.uint8], detections: Sequence[Detection]
                 ) -> list[QualityReport]:
    """One report per detection (same order); `grey` is the frame as 8-bit grey."""
    best = dominant_index(detections)
    return [_verdict(det, grey, dominant=i == best) for i, det in enumerate(detections)]

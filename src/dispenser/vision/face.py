"""What the vision pipeline hands to the service: a detected face and its quality verdict.

Kept apart from the detector and the quality gate so that consumers (tracker, service,
simulator) depend on these two small value types only, not on onnxruntime or OpenCV.
A `Face` holds landmarks, which are biometric: it is never logged, printed or stored, and
its `repr` leaves the landmarks out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

# Reason codes of the quality gate (the display maps each to a message for the person).
OK: Final = "ok"
TOO_SMALL: Final = "too_small"          # "come closer"
BLURRY: Final = "blurry"                # "hold still"
TOO_DARK: Final = "too_dark"            # "too dark"
TOO_BRIGHT: Final = "too_bright"        # "too bright"
NOT_FRONTAL: Final = "not_frontal"      # "look at the camera"
LOW_SCORE: Final = "low_score"          # "look at the camera" (unclear face)
SEVERAL_FACES: Final = "several_faces"  # "one person at a time"
REASONS: Final = (OK, TOO_SMALL, BLURRY, TOO_DARK, TOO_BRIGHT, NOT_FRONTAL, LOW_SCORE,
                  SEVERAL_FACES)


@dataclass(frozen=True)
class QualityReport:
    """The gate's verdict on one face: `ok`, the first failed check's `reason` code, the
    measurements it was decided on (plain numbers about image quality, not identity), and
    `frame_rank`, how good the frame is to embed (higher is better: more frontal, sharper),
    by which a hold keeps its best frames."""

    ok: bool
    reason: str
    inter_ocular_px: float = 0.0
    sharpness: float = 0.0
    brightness: float = 0.0
    clipped_fraction: float = 0.0
    yaw_ratio: float = 0.0
    pitch_ratio: float = 0.0
    roll_deg: float = 0.0
    frame_rank: float = 0.0


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in frame pixels.

    box: (x0, y0, x1, y1); score: detector confidence in [0, 1]; landmarks: (5, 2) float32,
    left eye, right eye, nose, mouth left, mouth right (image-left first).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: npt.NDArray[np.float32] = field(repr=False)
    quality: QualityReport

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

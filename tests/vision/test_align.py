"""Alignment: the similarity fit, dlib's chip geometry (against dlib's own chip), the MTCNN
template path, the image pyramid for large faces, and input checking."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import pytest

from dispenser.errors import DispenserError
from dispenser.vision import align

U8 = npt.NDArray[np.uint8]
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def _rotation(deg: float) -> npt.NDArray[np.float64]:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


def _apply(m: npt.NDArray[np.float64], pts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return pts @ m[:, :2].T + m[:, 2]


def test_similarity_transform_recovers_an_exact_similarity() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, size=(5, 2))
    truth = np.hstack([1.7 * _rotation(-23.0), np.array([[12.5], [-40.0]])])
    m = align.similarity_transform(src, _apply(truth, src))
    np.testing.assert_allclose(m, truth, atol=1e-9)


def test_similarity_transform_is_least_squares_and_never_reflects() -> None:
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, size=(5, 2))
    mirrored = src * np.array([-1.0, 1.0])
    m = align.similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0  # a rotation, never a mirror image of the face
    noisy = _apply(np.hstack([0.8 * _rotation(10.0), np.array([[3.0], [4.0]])]), src)
    noisy += rng.normal(0, 2.0, size=noisy.shape)
    best = align.similarity_transform(src, noisy)
    best_err = ((_apply(best, src) - noisy) ** 2).sum()
    for _ in range(50):  # no nearby similarity fits better
        scale, angle = 1 + rng.normal(0, 0.01), rng.normal(0, 0.5)
        t = rng.normal(0, 0.2, size=2)
        a = best[:, :2] @ (scale * _rotation(angle))
        other = np.hstack([a, (best[:, 2] + t)[:, None]])
        assert ((_apply(other, src) - noisy) ** 2).sum() >= best_err


def test_dlib_chip_matches_dlibs_own_get_face_chip(
    astronaut_rgb: U8, dlib_golden: dict[str, np.ndarray]
) -> None:
    out = np.zeros((150, 150, 3), np.uint8)
    landmarks = dlib_golden["astronaut_landmarks5"].astype(np.float64)
    align.extract_dlib_chip(astronaut_rgb, landmarks, out)
    diff = out.astype(np.int16) - dlib_golden["chips"][0].astype(np.int16)
    # dlib truncates interpolated values where OpenCV rounds: 0 or +1 everywhere, never more.
    assert np.abs(diff).max() <= 1
    assert np.abs(diff).mean() < 0.6


def test_dlib_template_lands_on_the_rectangle_dlib_describes() -> None:
    # Landmarks exactly on the template at scale 1: dlib centres a rectangle of side 149
    # (size*scale - 1) on T(75, 75), so chip pixel 0 sits at image 0.5 and 149 at 149.5:
    # unit scale, shifted by half a pixel from the raw least-squares fit.
    m = align.dlib_chip_mapping(align.dlib_chip_template())
    np.testing.assert_allclose(m, np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5]]), atol=1e-9)


def _place_chip(chip: U8, scale: float, angle: float, canvas: int) -> tuple[U8, np.ndarray]:
    """Paste `chip` into a grey canvas under a similarity; return (image, chip->image map)."""
    centre = np.array([canvas / 2.0, canvas / 2.0])
    a = scale * _rotation(angle)
    chip_to_image = np.hstack([a, (centre - a @ np.array([74.5, 74.5]))[:, None]])
    image = cv2.warpAffine(chip, chip_to_image, (canvas, canvas), flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    return image, chip_to_image


@pytest.mark.parametrize(("scale", "angle"), [(1.3, 12.0), (0.9, -25.0), (4.5, 8.0)])
def test_mtcnn_path_undoes_a_known_similarity(dlib_golden: dict[str, np.ndarray], scale: float,
                                              angle: float) -> None:
    chip = dlib_golden["chips"][0]
    image, chip_to_image = _place_chip(chip, scale, angle, canvas=int(150 * scale * 1.6))
    landmarks = _apply(chip_to_image, align.MTCNN_CHIP_TEMPLATE).astype(np.float32)
    out = np.full((150, 150, 3), 7, np.uint8)
    align.extract_chip(image, landmarks, out)
    inner = (slice(10, 140), slice(10, 140))
    err = np.abs(out[inner].astype(np.int16) - chip[inner].astype(np.int16)).mean()
    # resampling twice blurs a little; at 4.5x the pyramid also reproduces dlib's offset of
    # 1.5 image px (a third of a chip pixel here). A geometry error of one chip pixel would
    # give mean errors of 8+ grey levels on this face.
    assert err < (4.0 if scale > 2 else 3.0)


def test_large_faces_go_through_a_pyramid_not_aliased_sampling() -> None:
    # A one-pixel checkerboard seen 4x smaller must come out mid-grey, as a camera would
    # see it; plain bilinear sampling at a 4-pixel step would return 0s and 255s.
    yy, xx = np.mgrid[0:800, 0:800]
    board = (((xx + yy) % 2) * 255).astype(np.uint8)
    image = np.ascontiguousarray(np.repeat(board[:, :, None], 3, axis=2))
    template = align.MTCNN_CHIP_TEMPLATE
    landmarks = (template * 4.0 + 50.0).astype(np.float32)
    out = np.zeros((150, 150, 3), np.uint8)
    align.extract_chip(image, landmarks, out)
    assert abs(float(out.mean()) - 127.5) < 3
    assert float(out.std()) < 5


def test_pyramid_levels_are_zeroised_after_use(monkeypatch: pytest.MonkeyPatch) -> None:
    levels: list[U8] = []
    real = cv2.pyrDown

    def recording(src: U8) -> U8:
        level = real(src)
        levels.append(level)
        return level

    monkeypatch.setattr(align.cv2, "pyrDown", recording)
    rng = np.random.default_rng(3)
    image = rng.integers(1, 255, size=(900, 900, 3), dtype=np.uint8)
    out = np.zeros((150, 150, 3), np.uint8)
    align.extract_chip(image, (align.MTCNN_CHIP_TEMPLATE * 5.0).astype(np.float32), out)
    assert len(levels) == 2  # 750 px face -> 375 -> 188: halved twice
    assert all(not level.any() for level in levels)
    assert out.any()


def test_chip_is_written_into_the_callers_buffer(astronaut_rgb: U8) -> None:
    out = np.zeros((150, 150, 3), np.uint8)
    address = out.__array_interface__["data"][0]
    landmarks = np.array([[185.0, 100.0], [245.0, 100.0], [215.0, 130.0], [190.0, 150.0],
                          [240.0, 150.0]], np.float32)
    align.align_face(astronaut_rgb, (170.0, 70.0, 260.0, 170.0), landmarks, out)
    assert out.__array_interface__["data"][0] == address
    assert out.std() > 10  # a real picture, not an empty buffer


def test_face_outside_the_image_gives_black_chip_not_an_error() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    out = np.full((150, 150, 3), 9, np.uint8)
    far = (align.MTCNN_CHIP_TEMPLATE * 3.0 + 5000.0).astype(np.float32)
    align.extract_chip(image, far, out)
    assert not out.any()


@pytest.mark.parametrize(
    ("image", "landmarks", "out", "what"),
    [
        (np.zeros((50, 50), np.uint8), np.ones((5, 2), np.float32),
         np.zeros((150, 150, 3), np.uint8), "image"),
        (np.zeros((50, 50, 4), np.uint8), np.ones((5, 2), np.float32),
         np.zeros((150, 150, 3), np.uint8), "image"),
        (np.zeros((50, 50, 3), np.uint16), np.ones((5, 2), np.float32),
         np.zeros((150, 150, 3), np.uint8), "image"),
        (np.zeros((50, 50, 3), np.uint8), np.ones((4, 2), np.float32),
         np.zeros((150, 150, 3), np.uint8), "landmarks"),
        (np.zeros((50, 50, 3), np.uint8), np.full((5, 2), np.nan, np.float32),
         np.zeros((150, 150, 3), np.uint8), "landmarks"),
        (np.zeros((50, 50, 3), np.uint8), np.ones((5, 2), np.float32),
         np.zeros((112, 150, 3), np.uint8), "output"),
        (np.zeros((50, 50, 3), np.uint8), np.ones((5, 2), np.float32),
         np.zeros((150, 150, 3), np.float32), "output"),
        (np.zeros((50, 50, 3), np.uint8), np.ones((5, 2), np.float32),
         np.zeros((150, 150, 3), np.uint8), "one place"),
    ],
)
def test_bad_inputs_give_one_line_errors(image: np.ndarray, landmarks: np.ndarray,
                                         out: np.ndarray, what: str) -> None:
    with pytest.raises(DispenserError, match=what):
        align.extract_chip(image, landmarks, out)


def test_align_face_gives_dlibs_template_from_an_mtcnn_detection(
    astronaut_rgb: U8, dlib_golden: dict[str, np.ndarray]
) -> None:
    from dispenser.vision.detector import MtcnnDetector
    from dispenser.vision.embedder import DLIB_MODEL, Embedder

    faces = MtcnnDetector(min_face_px=40, max_side_px=1024, threads=1).detect(astronaut_rgb)
    face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    hog_box = dlib_golden["astronaut_box"].astype(np.float64)
    mapped = np.array(align.dlib_box_from_mtcnn(face.box))
    assert np.abs(mapped - hog_box).max() < 0.1 * (hog_box[2] - hog_box[0])

    embedder = Embedder(threads=1, model=DLIB_MODEL)
    reference = dlib_golden["descriptors"][0] / np.linalg.norm(dlib_golden["descriptors"][0])
    chip = np.zeros((150, 150, 3), np.uint8)
    template = np.zeros(128, np.float32)
    align.align_face(astronaut_rgb, face.box, face.landmarks, chip)
    embedder.embed(chip, template)
    via_shape_predictor = float(template @ reference)
    align.extract_chip(astronaut_rgb, face.landmarks, chip)
    embedder.embed(chip, template)
    via_mtcnn_template = float(template @ reference)
    # the default path is the one closer to dlib's own pipeline (models/README.md)
    assert via_shape_predictor > 0.999
    assert via_shape_predictor > via_mtcnn_template


def test_align_face_refuses_an_empty_box(astronaut_rgb: U8) -> None:
    out = np.zeros((150, 150, 3), np.uint8)
    landmarks = np.ones((5, 2), np.float32)
    with pytest.raises(DispenserError, match="box"):
        align.align_face(astronaut_rgb, (100.0, 100.0, 100.0, 150.0), landmarks, out)


def test_large_faces_match_dlibs_pyramid_chips(astronaut_rgb: U8) -> None:
    # dlib halves the image once (x3) and twice (x5) before sampling these chips; OpenCV's
    # pyramid rounds where dlib truncates (about half a grey level per level), nothing more.
    with np.load(DATA_DIR / "dlib_chip_pyramid_golden.npz") as z:
        scales, landmarks, chips = z["scales"], z["landmarks5"], z["chips"]
    out = np.zeros((150, 150, 3), np.uint8)
    for levels, (scale, points, chip) in enumerate(zip(scales, landmarks, chips, strict=True), 1):
        big = cv2.resize(astronaut_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        align.extract_dlib_chip(big, points.astype(np.float64), out)
        diff = np.abs(out.astype(np.int16) - chip.astype(np.int16))
        assert diff.mean() < 0.6 + 0.5 * levels  # without dlib's pyramid offset: 2.0 and 3.3
        assert np.percentile(diff, 99) <= 3

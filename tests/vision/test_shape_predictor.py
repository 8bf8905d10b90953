"""dlib's 5-point shape predictor: against dlib on the astronaut, the converter's reading of
dlib's format (on a small synthetic model written here), the card, and bad input."""

from __future__ import annotations

import hashlib
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from dispenser.models import convert_shape_predictor as conv
from dispenser.models.dlib_serialize import DlibFormatError

from dispenser.errors import DispenserError
from dispenser.vision.model_files import packaged_model_path
from dispenser.vision.shape_predictor import MODEL_NAME, ShapePredictor


@pytest.fixture(scope="module")
def predictor() -> ShapePredictor:
    return ShapePredictor()


def _predict(p: ShapePredictor, image: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    out = np.zeros((5, 2), np.float32)
    p.predict(image, (box[0], box[1], box[2], box[3]), out)
    return out


def test_matches_dlib_on_the_astronaut(predictor: ShapePredictor, astronaut_rgb: np.ndarray,
                                       dlib_golden: dict[str, np.ndarray]) -> None:
    box = tuple(float(v) for v in dlib_golden["astronaut_box"])
    points = _predict(predictor, astronaut_rgb, box)
    # dlib rounds its points to whole pixels (floor(x + 0.5)); ours agree exactly once rounded
    np.testing.assert_array_equal(np.floor(points + 0.5), dlib_golden["astronaut_landmarks5"])


def test_colour_order_does_not_matter(predictor: ShapePredictor, astronaut_rgb: np.ndarray,
                                      dlib_golden: dict[str, np.ndarray]) -> None:
    box = tuple(float(v) for v in dlib_golden["astronaut_box"])
    bgr = np.ascontiguousarray(astronaut_rgb[:, :, ::-1])
    np.testing.assert_array_equal(_predict(predictor, bgr, box),
                                  _predict(predictor, astronaut_rgb, box))


def test_moving_image_and_box_together_moves_the_points(
        predictor: ShapePredictor, astronaut_rgb: np.ndarray,
        dlib_golden: dict[str, np.ndarray]) -> None:
    box = np.array(dlib_golden["astronaut_box"], dtype=np.float64)
    shifted = np.zeros((512 + 7, 512 + 13, 3), np.uint8)
    shifted[7:, 13:] = astronaut_rgb
    before = _predict(predictor, astronaut_rgb, tuple(box))
    after = _predict(predictor, shifted, tuple(np.add(box, (13, 7, 13, 7))))
    np.testing.assert_allclose(after - before, np.tile([13.0, 7.0], (5, 1)), atol=1e-3)


def test_face_partly_outside_the_image_still_gives_finite_points(
        predictor: ShapePredictor, astronaut_rgb: np.ndarray) -> None:
    points = _predict(predictor, astronaut_rgb, (-40.0, -40.0, 60.0, 60.0))
    assert np.all(np.isfinite(points))


@pytest.mark.parametrize(
    ("image", "box", "out", "what"),
    [
        (np.zeros((50, 50), np.uint8), (0, 0, 10, 10), np.zeros((5, 2), np.float32), "image"),
        (np.zeros((50, 50, 3), np.float32), (0, 0, 10, 10), np.zeros((5, 2), np.float32),
         "image"),
        (np.zeros((50, 50, 3), np.uint8), (0, 0, 10, 10), np.zeros((5, 2), np.float64),
         "output"),
        (np.zeros((50, 50, 3), np.uint8), (10, 0, 10, 10), np.zeros((5, 2), np.float32), "box"),
        (np.zeros((50, 50, 3), np.uint8), (0, 0, math.nan, 10), np.zeros((5, 2), np.float32),
         "box"),
    ],
)
def test_bad_input_gives_one_line_errors(predictor: ShapePredictor, image: np.ndarray,
                                         box: tuple[float, float, float, float],
                                         out: np.ndarray, what: str) -> None:
    with pytest.raises(DispenserError, match=what):
        predictor.predict(image, box, out)


def test_card_matches_the_committed_arrays() -> None:
    card = tomllib.loads(packaged_model_path(f"{MODEL_NAME}.toml").read_text(encoding="utf-8"))
    npz = packaged_model_path(card["model"]["file"])
    assert hashlib.sha256(npz.read_bytes()).hexdigest() == card["model"]["sha256"]
    with np.load(npz, allow_pickle=False) as arrays:
        assert sorted(arrays.files) == sorted(card["arrays"])
        for name, description in card["arrays"].items():
            dtype, shape = description.split(":")[0].split(" ", 1)
            assert str(arrays[name].dtype) == dtype
            assert str(arrays[name].shape) == shape
    assert card["outputs"][0]["shape"] == [5, 2]


def test_altered_model_file_is_refused(tmp_path: Path) -> None:
    data = bytearray(packaged_model_path(f"{MODEL_NAME}.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "sp.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(DispenserError, match="corrupt or replaced"):
        ShapePredictor(model_path=bad)


# ---------------------------------------------------------------------------------------
# A tiny model in dlib's serialisation, written here from the format description, to check
# that the converter reads every field where dlib writes it and the kernel walks the trees.


def _int(value: int) -> bytes:
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def _float(value: float) -> bytes:
    m, e = math.frexp(value)
    return _int(round(m * 2**24)) + _int(e - 24)


def _column(values: list[float]) -> bytes:
    return _int(-len(values)) + _int(-1) + b"".join(_float(v) for v in values)


MEAN = [0.3, 0.3, 0.7, 0.3, 0.5, 0.5, 0.35, 0.75, 0.65, 0.75]
LEFT_LEAF = [0.05] * 10
RIGHT_LEAF = [-0.05, 0.0] * 5


def _tiny_model() -> bytes:
    """1 cascade, 1 depth-1 tree comparing pixel 0 (at point 0) with pixel 1 (at point 4)."""
    tree = _int(1) + _int(0) + _int(1) + _float(10.0)  # splits: [(0, 1, 10.0)]
    tree += _int(2) + _column(LEFT_LEAF) + _column(RIGHT_LEAF)
    forests = _int(1) + _int(1) + tree
    anchors = _int(1) + _int(2) + _int(0) + _int(4)
    deltas = _int(1) + _int(2) + _float(0.0) + _float(0.0) + _float(0.0) + _float(0.0)
    return _int(1) + _column(MEAN) + forests + anchors + deltas


def _load_tiny(tmp_path: Path) -> ShapePredictor:
    npz = conv.write_npz(conv.parse_shape_predictor(_tiny_model()))
    (tmp_path / "tiny.npz").write_bytes(npz)
    card = packaged_model_path(f"{MODEL_NAME}.toml").read_text(encoding="utf-8")
    real_hash = tomllib.loads(card)["model"]["sha256"]
    (tmp_path / "tiny.toml").write_text(
        card.replace(real_hash, hashlib.sha256(npz).hexdigest()), encoding="utf-8")
    return ShapePredictor(model_path=tmp_path / "tiny.npz", card_path=tmp_path / "tiny.toml")


def test_converter_reads_dlibs_layout() -> None:
    arrays = conv.parse_shape_predictor(_tiny_model())
    np.testing.assert_array_equal(arrays["initial_shape"].ravel(), np.float32(MEAN))
    assert arrays["split_pixels"].tolist() == [[[[0, 1]]]]
    assert arrays["split_thresh"].tolist() == [[[10.0]]]
    np.testing.assert_array_equal(arrays["leaf_deltas"][0, 0, 0].ravel(), np.float32(LEFT_LEAF))
    np.testing.assert_array_equal(arrays["leaf_deltas"][0, 0, 1].ravel(), np.float32(RIGHT_LEAF))
    assert arrays["anchor_idx"].tolist() == [[0, 4]]
    assert conv.write_npz(arrays) == conv.write_npz(conv.parse_shape_predictor(_tiny_model()))


@pytest.mark.parametrize("brighter", ["point0", "point4"])
def test_kernel_takes_the_branch_the_pixels_say(tmp_path: Path, brighter: str) -> None:
    tiny = _load_tiny(tmp_path)
    image = np.full((200, 200, 3), 100, np.uint8)
    box = (50.0, 40.0, 150.0, 140.0)  # point k sits at box + 100 * mean
    x, y = (80, 70) if brighter == "point0" else (115, 115)
    image[y, x] = 130  # 30 grey levels brighter than the rest
    leaf = LEFT_LEAF if brighter == "point0" else RIGHT_LEAF  # 130 - 100 > 10 goes left
    expected = (np.array(MEAN) + np.array(leaf)).reshape(5, 2) * 100 + [50.0, 40.0]
    np.testing.assert_allclose(_predict(tiny, image, box), expected, atol=1e-4)


@pytest.mark.parametrize("damage", ["truncated", "trailing", "version"])
def test_converter_refuses_damaged_files(damage: str) -> None:
    data = _tiny_model()
    if damage == "truncated":
        data = data[:-3]
    elif damage == "trailing":
        data += b"\x01\x00"
    else:
        data = _int(2) + data[2:]
    with pytest.raises(DlibFormatError):
        conv.parse_shape_predictor(data)

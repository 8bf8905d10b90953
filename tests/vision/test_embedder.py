"""The face embedder: fidelity to dlib, template normalisation, buffer zeroisation, bad input.

The golden file holds dlib 20.0.1's own descriptors for 6 chips (an aligned face, uniform
noise, a grey ramp, all zeros); see tests/data/dlib_resnet_golden.npz and
/models/dlib_face_recognition_resnet_model_v1.toml [fidelity].
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dispenser.config import VisionSettings
from dispenser.embedders import EMBEDDER_MODELS
from dispenser.errors import DispenserError
from dispenser.vision.embedder import DLIB_MODEL, SFACE_MODEL, Embedder
from dispenser.vision.model_files import load_card, packaged_model_path

MODEL = "dlib_face_recognition_resnet_model_v1"


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(threads=2, model=DLIB_MODEL, batch_capacity=4)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.einsum("ij,ij->i", a, b)


def test_onnx_graph_reproduces_dlib_raw_descriptors(
        dlib_golden: dict[str, np.ndarray], record_property: Callable[[str, Any], None]) -> None:
    """The committed ONNX itself (no normalisation of ours) against dlib's raw vectors."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(packaged_model_path(f"{MODEL}.onnx")),
                                   providers=["CPUExecutionProvider"])
    raw = session.run(["descriptor"], {"chip": dlib_golden["chips"]})[0].astype(np.float64)
    ref = dlib_golden["descriptors"]
    diff = float(np.abs(raw - ref).max())
    cos = _cosines(raw, ref)
    record_property("max_abs_diff_raw", diff)
    record_property("min_cosine", float(cos.min()))
    print(f"raw descriptors vs dlib: max abs diff {diff:.3g}, 1 - min cosine {1 - cos.min():.3g}")
    assert cos.min() >= 0.9999
    assert diff < 1e-5


def test_matches_dlib_reference_descriptors(
        embedder: Embedder, dlib_golden: dict[str, np.ndarray],
        record_property: Callable[[str, Any], None]) -> None:
    chips, ref = dlib_golden["chips"], dlib_golden["descriptors"]
    templates = np.empty((len(chips), 128), np.float32)
    for chip, out in zip(chips, templates, strict=True):
        embedder.embed(chip, out)
    cos = _cosines(templates.astype(np.float64), ref)
    diff = float(np.abs(templates - ref / np.linalg.norm(ref, axis=1, keepdims=True)).max())
    record_property("min_cosine", float(cos.min()))
    record_property("max_abs_diff_normalised", diff)
    print(f"templates vs dlib: 1 - cosine per chip {np.array2string(1 - cos, precision=2)}, "
          f"max abs diff {diff:.3g}")
    assert cos.min() >= 0.9999
    assert diff < 1e-5


def test_templates_are_unit_length_and_distinct(
        embedder: Embedder, dlib_golden: dict[str, np.ndarray]) -> None:
    out = np.empty((6, 128), np.float32)
    embedder.embed_batch(dlib_golden["chips"], out)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    similarity = out @ out.T
    assert similarity[np.triu_indices(6, 1)].max() < 0.999  # six different inputs
    assert similarity[0, 1:].max() < 0.9  # the face is far from noise, ramp and black


def test_batch_in_chunks_equals_one_by_one(
        embedder: Embedder, dlib_golden: dict[str, np.ndarray]) -> None:
    chips = dlib_golden["chips"]  # 6 chips through batch_capacity 4: chunks of 4 and 2
    batch = np.empty((6, 128), np.float32)
    embedder.embed_batch(chips, batch)
    single = np.empty((6, 128), np.float32)
    for chip, out in zip(chips, single, strict=True):
        embedder.embed(chip, out)
    np.testing.assert_allclose(batch, single, atol=1e-6)
    empty = np.empty((0, 128), np.float32)
    embedder.embed_batch(chips[:0], empty)


class _SpySession:
    """Wraps the onnxruntime session to look at the owned buffers right after each run.

    Runs on a non-zero chip are face runs; the others are the embedder's scrub runs.
    `on_face` is called right after each face run (before the embedder sees the result).
    """

    def __init__(self, embedder: Embedder, *, fail_on_face: bool = False,
                 on_face: Callable[[], None] | None = None) -> None:
        self.inner = embedder._session
        self.embedder = embedder
        self.fail_on_face = fail_on_face
        self.on_face = on_face
        self.runs: list[tuple[bool, bool]] = []  # (chip buffer non-zero, descriptor non-zero)
        embedder._session = self

    def io_binding(self) -> Any:
        return self.inner.io_binding()

    def run_with_iobinding(self, binding: Any) -> None:
        self.inner.run_with_iobinding(binding)
        face = bool(self.embedder._chips.any())
        self.runs.append((face, bool(self.embedder._descriptors.any())))
        if face and self.on_face is not None:
            self.on_face()
        if face and self.fail_on_face:
            raise RuntimeError("injected failure after the run")


def _assert_owned_buffers_zero(embedder: Embedder) -> None:
    # the raw bytes, not only the float values (no -0.0 or NaN left behind)
    assert not embedder._chips.view(np.uint8).any()
    assert not embedder._descriptors.view(np.uint8).any()


def test_owned_buffers_hold_the_face_only_during_the_run(
        dlib_golden: dict[str, np.ndarray]) -> None:
    """onnxruntime reads/writes the owned arrays (non-zero during the run), zeros after;
    the scrub run on the zeroed chip comes only when asked for (once per decision)."""
    embedder = Embedder(threads=1, model=DLIB_MODEL, batch_capacity=4)
    spy = _SpySession(embedder)
    embedder.embed(dlib_golden["chips"][0], np.empty(128, np.float32))
    # first use of a batch size: a planning run on zeros, then the face; no scrub yet
    assert spy.runs == [(False, True), (True, True)]
    _assert_owned_buffers_zero(embedder)
    embedder.embed(dlib_golden["chips"][1], np.empty(128, np.float32))
    assert spy.runs[2:] == [(True, True)]
    embedder.scrub()                          # one scrub for both faces
    assert spy.runs[3:] == [(False, True)]
    embedder.scrub()                          # nothing embedded since: no run
    assert len(spy.runs) == 4
    _assert_owned_buffers_zero(embedder)


def test_a_batch_is_scrubbed_before_it_returns(dlib_golden: dict[str, np.ndarray]) -> None:
    embedder = Embedder(threads=1, model=DLIB_MODEL, batch_capacity=4)
    spy = _SpySession(embedder)
    embedder.embed_batch(dlib_golden["chips"][:5], np.empty((5, 128), np.float32))
    # chunks of 4 and 1, each planned on zeros first; then one scrub run per size used
    assert spy.runs[:4] == [(False, True), (True, True), (False, True), (True, True)]
    assert sorted(spy.runs[4:]) == [(False, True), (False, True)]
    _assert_owned_buffers_zero(embedder)


def test_owned_buffers_are_zeroised_when_a_run_fails(dlib_golden: dict[str, np.ndarray]) -> None:
    embedder = Embedder(threads=1, model=DLIB_MODEL, batch_capacity=2)
    spy = _SpySession(embedder, fail_on_face=True)
    with pytest.raises(RuntimeError, match="injected"):
        embedder.embed(dlib_golden["chips"][0], np.empty(128, np.float32))
    assert spy.runs == [(False, True), (True, True)]
    _assert_owned_buffers_zero(embedder)
    embedder.close()                          # the failed face's activations too
    assert spy.runs[2:] == [(False, True)]
    _assert_owned_buffers_zero(embedder)


def test_zeroise_overwrites_the_owned_buffers(embedder: Embedder) -> None:
    embedder._chips.fill(7)
    embedder._descriptors.fill(0.5)
    embedder.zeroise()
    assert not embedder._chips.view(np.uint8).any()
    assert not embedder._descriptors.view(np.uint8).any()


@pytest.mark.parametrize(("chip", "message"), [
    (np.zeros((150, 150, 3), np.float32), "uint8"),
    (np.zeros((150, 150), np.uint8), "shape"),
    (np.zeros((150, 150, 4), np.uint8), "shape"),
    (np.zeros((112, 112, 3), np.uint8), "shape"),
    ([[0] * 3] * 150, "numpy array"),
])
def test_bad_chip_is_a_one_line_error(embedder: Embedder, chip: Any, message: str) -> None:
    with pytest.raises(DispenserError, match=message) as err:
        embedder.embed(chip, np.empty(128, np.float32))
    assert "\n" not in str(err.value)


def test_bad_output_buffer_is_a_one_line_error(embedder: Embedder) -> None:
    chip = np.zeros((150, 150, 3), np.uint8)
    with pytest.raises(DispenserError, match="float32"):
        embedder.embed(chip, np.empty(128, np.float64))
    with pytest.raises(DispenserError, match="shape"):
        embedder.embed(chip, np.empty(64, np.float32))
    read_only = np.empty(128, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(DispenserError, match="read-only"):
        embedder.embed(chip, read_only)
    with pytest.raises(DispenserError, match=r"\(N, 150, 150, 3\)"):
        embedder.embed_batch(chip, np.empty((1, 128), np.float32))
    with pytest.raises(DispenserError, match="shape"):
        embedder.embed_batch(chip[None], np.empty((2, 128), np.float32))


def test_missing_model_file_names_file_and_expected_hash(tmp_path: Path) -> None:
    expected = load_card(MODEL).sha256
    missing = tmp_path / "gone.onnx"
    with pytest.raises(DispenserError) as err:
        Embedder(model=DLIB_MODEL, model_path=missing)
    assert str(missing) in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_corrupt_model_file_is_refused_before_loading(tmp_path: Path, damage: str) -> None:
    expected = load_card(MODEL).sha256
    path = tmp_path / "model.onnx"
    shutil.copyfile(packaged_model_path(f"{MODEL}.onnx"), path)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01  # one bit in the middle of a weight
    elif damage == "truncate":
        del data[-1000:]
    else:
        data.clear()
    path.write_bytes(bytes(data))
    with pytest.raises(DispenserError, match="corrupt or replaced") as err:
        Embedder(model=DLIB_MODEL, model_path=path)
    assert str(path) in str(err.value) and expected in str(err.value)


def test_card_that_disagrees_with_the_graph_is_refused(tmp_path: Path) -> None:
    card = packaged_model_path(f"{MODEL}.toml").read_text()
    wrong = tmp_path / "card.toml"
    wrong.write_text(card.replace('shape = ["batch", 150, 150, 3]',
                                  'shape = ["batch", 112, 112, 3]'))
    with pytest.raises(DispenserError, match="do not match its card"):
        Embedder(model=DLIB_MODEL, card_path=wrong)


def test_threads_come_from_the_settings() -> None:
    embedder = Embedder.from_settings(VisionSettings(threads=1))
    options = embedder._session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.inter_op_num_threads == 1


def test_no_copy_of_descriptor_or_template_survives_in_process_memory(
        dlib_golden: dict[str, np.ndarray]) -> None:
    """Scan our own address space: onnxruntime wrote the descriptor only into the owned
    buffer (now zero), and the template exists only in the caller's buffer.

    The chip is the mirror image of the golden face, which no other test embeds, so copies
    that other tests made on purpose cannot be mistaken for leaks."""
    from dispenser.privacy.memscan import scan_own_memory

    embedder = Embedder(threads=1, model=DLIB_MODEL, batch_capacity=1)
    reference = np.zeros((2, 128), np.float32)  # excluded from the scan by scan_own_memory
    _SpySession(embedder, on_face=lambda: np.copyto(reference[0], embedder._descriptors[0]))
    out = np.empty(128, np.float32)
    embedder.embed(np.ascontiguousarray(dlib_golden["chips"][0][:, ::-1]), out)
    np.copyto(reference[1], out)
    assert reference.any(axis=1).all()
    assert scan_own_memory(reference).hits == (0, 1)  # positive control: the caller's copy
    out.fill(0)
    assert scan_own_memory(reference).hits == (0, 0)


_POOLED_FEATURES_CHILD = """
import sys
import numpy as np
from dispenser.vision.ort_session import create_session
session = create_session(open(sys.argv[1], "rb").read(), threads=1, name="probe")
for value in session.run(sys.argv[3:], {"chip": np.load(sys.argv[2])}):
    value = np.ascontiguousarray(value)
    sys.stdout.buffer.write(np.int64(value.nbytes).tobytes() + value.tobytes())
"""


def _features_before_the_last_layer(model_name: str, chip: np.ndarray,
                                     tmp_path: Path) -> list[np.ndarray]:
    """The input of the network's final fully connected layer (the template is one matrix
    product away from it) for `chip`, as bytes, computed by a child process (the same
    model with that tensor exposed, same session settings) and read straight into the
    returned arrays, so this process holds no copy other than the ones the embedder makes.

    An int8 model's last layer reads quantised features: then both forms are returned,
    the uint8 tensor and the float32 one it was quantised from (which of them onnxruntime
    keeps in its arena depends on how it fuses and reuses buffers)."""
    onnx = pytest.importorskip("onnx", reason="onnx builds the probe model")
    import subprocess
    import sys

    model = onnx.load(str(packaged_model_path(f"{model_name}.onnx")))
    *_, last = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    producer = {out: node for node in model.graph.node for out in node.output}
    probes = [(last.input[0], onnx.TensorProto.FLOAT)]
    if producer[last.input[0]].op_type == "DequantizeLinear":
        quantised = producer[last.input[0]].input[0]
        probes = [(quantised, onnx.TensorProto.UINT8),
                  (producer[quantised].input[0], onnx.TensorProto.FLOAT)]
    for name, dtype in probes:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, dtype, None))
    onnx.save(model, str(tmp_path / "probe.onnx"))
    np.save(tmp_path / "chip.npy", chip[None])
    child = subprocess.Popen(
        [sys.executable, "-c", _POOLED_FEATURES_CHILD, str(tmp_path / "probe.onnx"),
         str(tmp_path / "chip.npy"), *(name for name, _ in probes)],
        stdout=subprocess.PIPE, bufsize=0)
    assert child.stdout is not None
    references = []
    for _ in probes:
        size = np.zeros(1, np.int64)  # the byte count first, then the tensor itself
        for target in (size, None):
            if target is None:
                target = np.zeros((1, int(size[0])), np.uint8)
                references.append(target)
            view, got = memoryview(target).cast("B"), 0
            while got < target.nbytes and (n := child.stdout.readinto(view[got:])):
                got += n
            assert got == target.nbytes
    assert child.wait() == 0 and all(r.any() for r in references)
    return references


@pytest.mark.parametrize("model", sorted(EMBEDDER_MODELS.values()))
def test_scrub_overwrites_onnxruntimes_copy_of_the_features(
        dlib_golden: dict[str, np.ndarray], tmp_path: Path, model: str) -> None:
    """The features before the last layer are in onnxruntime's arena right after a face
    run, still there when embed() returns (positive control: the scan finds them), and
    gone after the decision's scrub()."""
    from dispenser.privacy.memscan import scan_own_memory

    embedder = Embedder(threads=1, model=model, batch_capacity=1)
    size = embedder.chip_shape[0]
    # the ramp upside down, cut to the chip size: no other test embeds it
    chip = np.ascontiguousarray(dlib_golden["chips"][4][::-1][:size, :size])
    references = _features_before_the_last_layer(model, chip, tmp_path)

    def hits() -> int:
        return sum(sum(scan_own_memory(r).hits) for r in references)

    during: list[int] = []
    _SpySession(embedder, on_face=lambda: during.append(hits()))
    embedder.embed(chip, np.empty(128, np.float32))
    assert len(during) == 1 and during[0] >= 1
    assert hits() == during[0]   # embed alone leaves them
    embedder.scrub()
    assert hits() == 0


def test_closing_the_pipeline_scrubs_its_embedder(
        dlib_golden: dict[str, np.ndarray], tmp_path: Path,
        astronaut_bgr: np.ndarray) -> None:
    """FacePipeline.close() (and so every `with FacePipeline(...)`) leaves no features."""
    from dispenser.privacy.memscan import scan_own_memory
    from dispenser.vision.pipeline import FacePipeline

    embedder = Embedder(threads=1, model=SFACE_MODEL, batch_capacity=1)
    chips: list[np.ndarray] = []
    _SpySession(embedder, on_face=lambda: chips.append(embedder._chips[0].copy()))
    pipe = FacePipeline(VisionSettings(threads=1), embedder=embedder)
    faces = pipe.detect(astronaut_bgr)
    pipe.embed(astronaut_bgr, faces[0], np.empty(128, np.float32))
    (chip,) = chips
    (reference,) = _features_before_the_last_layer(SFACE_MODEL, chip, tmp_path)
    chips.clear()
    chip.fill(0)
    assert scan_own_memory(reference).hits == (1,)
    pipe.close()
    assert scan_own_memory(reference).hits == (0,)

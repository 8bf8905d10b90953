"""Make the int8 variant of a face embedder from its float32 ONNX (onnxruntime.quantization).

Why: int8 convolutions run about twice as fast as float32 on CPUs with integer dot-product
instructions (x86 VNNI, ARMv8.2 dot product, e.g. the Raspberry Pi 5). Each variant is
opt-in (`vision.embedder_precision = "int8"`) and has its own model card; how closely it
agrees with float32, and what that does to the match figures, is in docs/performance.md
("Embedder") and models/README.md.

Method: static QDQ quantisation, weights int8 per output channel, activations uint8, ranges
calibrated on face chips that are deterministic variants (mirror image, brightness, contrast,
small shifts) of the public-domain faces in tests/data, so the script needs nothing beyond
this repository:

- dlib: every operator quantised, min/max ranges, on variants of the aligned astronaut chip
  (chips[0] of tests/data/dlib_resnet_golden.npz);
- sface: only the dense convolutions and the last fully connected layer are quantised; its
  13 depthwise convolutions stay float32 (quantising them loses most of the agreement for
  under a tenth of the time, docs/performance.md), with percentile ranges (robust to the one
  extreme activation a min/max range would stretch to), on variants of the astronaut and
  the camera man (tests/data/astronaut.png, camera.png) aligned as the SFace card says.

Run from the repository root:

    pip install '.[convert]'
    python models/quantize_embedder.py dlib
    python models/quantize_embedder.py sface

The output is reproducible for a given onnxruntime/onnx version pair and CPU architecture
(the card records them); others may produce different bytes, which the card test would flag.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TEST_DATA = HERE.parent / "tests" / "data"
CALIBRATION_SEED = 20261122
CALIBRATION_CHIPS = 32


def calibration_chips(face: np.ndarray, count: int = CALIBRATION_CHIPS,
                      seed: int = CALIBRATION_SEED) -> Iterator[np.ndarray]:
    """Deterministic photometric/geometric variants of one aligned uint8 face chip."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        chip = face.astype(np.float32)
        if i % 2:
            chip = chip[:, ::-1]
        chip = chip * rng.uniform(0.6, 1.3) + rng.uniform(-30.0, 30.0)
        dy, dx = (int(v) for v in rng.integers(-6, 7, 2))
        chip = np.roll(chip, (dy, dx), axis=(0, 1))
        yield np.clip(np.rint(chip), 0, 255).astype(np.uint8)


def dlib_faces(data: Path = TEST_DATA) -> list[np.ndarray]:
    """The aligned astronaut chip dlib itself produced (`data`/dlib_resnet_golden.npz)."""
    with np.load(data / "dlib_resnet_golden.npz") as golden:
        return [np.asarray(golden["chips"][0])]


def sface_faces(data: Path = TEST_DATA) -> list[np.ndarray]:
    """The astronaut and the camera man (`data`/astronaut.png, camera.png), detected and
    aligned as the service aligns them."""
    import cv2

    from dispenser.config import VisionSettings
    from dispenser.vision.align import aligner_for
    from dispenser.vision.detector import MtcnnDetector
    from dispenser.vision.embedder import SFACE_MODEL
    from dispenser.vision.model_files import load_card

    card = load_card(SFACE_MODEL)
    align = aligner_for(card)
    size = int(card.sections["alignment"]["size"])
    vision = VisionSettings()
    detector = MtcnnDetector(min_face_px=vision.min_face_px,
                             max_side_px=vision.detect_max_side_px, threads=1)
    faces = []
    for name in ("astronaut.png", "camera.png"):
        bgr = cv2.imread(str(data / name))
        if bgr is None:
            raise OSError(f"cannot read {data / name}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        found = detector.detect(rgb)
        if not found:
            raise ValueError(f"no face found in {name}")
        chip = np.zeros((size, size, 3), np.uint8)
        align(rgb, found[0].box, found[0].landmarks, chip)
        faces.append(chip)
    return faces


@dataclass(frozen=True)
class Recipe:
    """How one embedder is quantised: which graph, which operators, which ranges, which faces."""

    float_model: str
    output: str
    faces: Callable[[Path], list[np.ndarray]]  # the calibration faces, from a test-data folder
    op_types: tuple[str, ...] | None  # None: every operator onnxruntime can quantise
    keep_depthwise_float: bool
    percentile_ranges: bool


RECIPES = {
    "dlib": Recipe("dlib_face_recognition_resnet_model_v1.onnx",
                   "dlib_face_recognition_resnet_model_v1_int8.onnx", dlib_faces,
                   op_types=None, keep_depthwise_float=False, percentile_ranges=False),
    "sface": Recipe("face_recognition_sface_2021dec.onnx",
                    "face_recognition_sface_2021dec_int8.onnx", sface_faces,
                    op_types=("Conv", "Gemm"), keep_depthwise_float=True,
                    percentile_ranges=True),
}


def _depthwise_convs(model_path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(model_path)).graph.node
            if node.op_type == "Conv"
            and any(a.name == "group" and a.i > 1 for a in node.attribute)]


def quantize(recipe: Recipe, faces: Sequence[np.ndarray], output: Path,
             float_model: Path | None = None) -> None:
    """Write the int8 QDQ model of `recipe`, calibrated on variants of `faces`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    chips = [chip for face in faces for chip in calibration_chips(face)]

    class _Chips(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._feeds = iter([{"chip": c[None]} for c in chips])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    source = float_model or HERE / recipe.float_model
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # folds each affine into its conv first, so the folded weights are what get quantised
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        excluded = _depthwise_convs(prepared) if recipe.keep_depthwise_float else None
        method = (CalibrationMethod.Percentile if recipe.percentile_ranges
                  else CalibrationMethod.MinMax)
        quantize_static(str(prepared), str(output), _Chips(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=method,
                        op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None,
                        nodes_to_exclude=excluded)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make a face embedder's int8 variant.")
    parser.add_argument("embedder", choices=sorted(RECIPES))
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="where to write it (default: beside the float32 model)")
    parser.add_argument("--data", type=Path, default=TEST_DATA,
                        help="the folder with the calibration faces (default: tests/data)")
    args = parser.parse_args(argv)
    recipe = RECIPES[args.embedder]
    output = args.output or HERE / recipe.output
    try:
        faces = recipe.faces(args.data)
    except (OSError, KeyError, ValueError) as exc:
        print(f"quantize_embedder: error: calibration faces: {exc}", file=sys.stderr)
        return 1
    quantize(recipe, faces, output)
    digest = hashlib.sha256(output.read_bytes()).hexdigest()
    print(f"int8 sha256 {digest}  {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

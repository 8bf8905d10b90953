"""Make the int8 variant of the face embedder from the float32 ONNX (onnxruntime.quantization).

Why: int8 convolutions run about twice as fast as float32 on CPUs with integer dot-product
instructions (x86 VNNI, ARMv8.2 dot product, e.g. the Raspberry Pi 5), for templates that
agree with float32 to a cosine of about 0.9995 on faces (numbers in docs/performance.md,
"Embedder"). It is opt-in (`vision.embedder_precision = "int8"`); float32 stays the default
because only float32 is checked against dlib itself.

Method: static QDQ quantisation, weights int8 per output channel, activations uint8 with
min/max ranges calibrated on face chips. The calibration chips are deterministic variants
(mirror image, brightness, contrast, small shifts) of the aligned astronaut face in
tests/data/dlib_resnet_golden.npz (scikit-image's public-domain NASA photo), so the script
needs nothing beyond this repository. Run from the repository root:

    pip install '.[convert]'
    python models/quantize_dlib_resnet.py

The output is reproducible for a given onnxruntime/onnx version pair (the card records the
pair used); different versions may produce different bytes, which the card test would flag.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FLOAT_MODEL = HERE / "dlib_face_recognition_resnet_model_v1.onnx"
DEFAULT_OUTPUT = HERE / "dlib_face_recognition_resnet_model_v1_int8.onnx"
CALIBRATION = HERE.parent / "tests" / "data" / "dlib_resnet_golden.npz"
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


def quantize(float_model: Path, face: np.ndarray, output: Path) -> None:
    """Write the int8 QDQ model for `float_model`, calibrated on variants of `face`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Chips(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._feeds = iter([{"chip": c[None]} for c in calibration_chips(face)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # folds each affine into its conv first, so the folded weights are what get quantised
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(output), _Chips(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=CalibrationMethod.MinMax)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make the int8 face-embedder variant.")
    parser.add_argument("--float-model", type=Path, default=FLOAT_MODEL)
    parser.add_argument("--calibration", type=Path, default=CALIBRATION,
                        help="npz whose chips[0] is an aligned uint8 RGB face chip")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    try:
        with np.load(args.calibration) as data:
            face = np.asarray(data["chips"][0])
    except (OSError, KeyError, ValueError) as exc:
        print(f"quantize_dlib_resnet: error: {args.calibration}: {exc}", file=sys.stderr)
        return 1
    quantize(args.float_model, face, args.output)
    digest = hashlib.sha256(args.output.read_bytes()).hexdigest()
    print(f"int8 sha256 {digest}  {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

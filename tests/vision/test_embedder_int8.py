"""The int8 embedder variant: agreement with float32, selection by settings, reproducibility."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import numpy as np
import pytest

from dispenser.config import VisionSettings
from dispenser.vision.embedder import Embedder, embedder_model
from dispenser.vision.model_files import load_card

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "dlib_resnet_golden.npz"


@pytest.fixture(scope="module")
def chips() -> np.ndarray:
    with np.load(GOLDEN) as data:
        return np.asarray(data["chips"])


def _templates(precision: str, chips: np.ndarray) -> np.ndarray:
    embedder = Embedder.from_settings(VisionSettings(threads=1, embedder="dlib",
                                                     embedder_precision=precision))
    out = np.empty((len(chips), 128), np.float32)
    embedder.embed_batch(chips, out)
    return out


def test_settings_select_the_variant() -> None:
    embedder = Embedder.from_settings(VisionSettings(embedder="dlib", embedder_precision="int8"))
    assert embedder.card.name == embedder_model("dlib", "int8")


def test_int8_agrees_with_float32_on_the_golden_chips(chips: np.ndarray) -> None:
    cosines = np.einsum("ij,ij->i", _templates("int8", chips), _templates("float32", chips))
    print(f"int8 vs float32 cosine per golden chip: {np.array2string(cosines, precision=5)}")
    assert cosines.min() >= 0.998


def test_int8_keeps_pair_scores_of_one_face_under_small_changes(chips: np.ndarray) -> None:
    """Variants of the face not used for calibration (another seed): scores barely move."""
    from dispenser.models.quantize_dlib_resnet import calibration_chips

    variants = np.stack(list(calibration_chips(chips[0], count=16, seed=1)))
    int8, float32 = _templates("int8", variants), _templates("float32", variants)
    assert np.einsum("ij,ij->i", int8, float32).min() >= 0.999
    upper = np.triu_indices(len(variants), 1)
    shift = np.abs((int8 @ int8.T) - (float32 @ float32.T))[upper]
    print(f"int8 pair-score shift: max {shift.max():.4f}, mean {shift.mean():.4f}")
    assert shift.max() < 0.01


def test_quantisation_reproduces_the_committed_int8_model(tmp_path: Path,
                                                          chips: np.ndarray) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx (extra 'convert') is needed to quantise")
    import onnxruntime
    from dispenser.models.quantize_dlib_resnet import FLOAT_MODEL, quantize

    card = load_card(embedder_model("dlib", "int8"))
    pinned = (card.sections["source"]["onnxruntime_version"],
              card.sections["source"]["onnx_version"], card.sections["source"]["machine"])
    if (onnxruntime.__version__, onnx.__version__, platform.machine()) != pinned:
        pytest.skip(f"the committed int8 bytes were made with onnxruntime/onnx/CPU {pinned}")
    out = tmp_path / "int8.onnx"
    quantize(FLOAT_MODEL, chips[0], out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == card.sha256

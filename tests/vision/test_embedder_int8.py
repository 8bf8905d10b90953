"""The int8 embedder variants: agreement with float32, selection by settings, their cards,
reproducibility of the committed bytes."""

from __future__ import annotations

import functools
import hashlib
import platform
from pathlib import Path

import numpy as np
import pytest

from dispenser.config import Settings, VisionSettings
from dispenser.embedders import EMBEDDER_NAMES, embedder_card
from dispenser.store.rule import rule_for
from dispenser.vision.embedder import Embedder
from dispenser.vision.model_files import load_card, packaged_model_path

DATA = Path(__file__).resolve().parent.parent / "data"
every_embedder = pytest.mark.parametrize("name", EMBEDDER_NAMES)


@functools.cache
def _faces(name: str) -> tuple[np.ndarray, ...]:
    """The public-domain faces the variant was calibrated on, aligned for `name`."""
    from dispenser.models.quantize_embedder import RECIPES

    return tuple(RECIPES[name].faces(DATA))


def _templates(name: str, precision: str, chips: np.ndarray) -> np.ndarray:
    embedder = Embedder.from_settings(VisionSettings(threads=1, embedder=name,
                                                     embedder_precision=precision))
    out = np.empty((len(chips), 128), np.float32)
    embedder.embed_batch(chips, out)
    return out


@every_embedder
def test_settings_select_the_variant_and_its_card(name: str) -> None:
    settings = Settings(vision=VisionSettings(embedder=name, embedder_precision="int8"))
    embedder = Embedder.from_settings(settings.vision)
    assert embedder.card.name == embedder_card(name, "int8") == f"{embedder_card(name)}_int8"
    rule = rule_for(settings)  # the decision rule reads the card of the model that runs
    if "calibration" in embedder.card.sections:
        assert rule.tail is not None and rule.tail.card == embedder.card.name
    else:
        assert rule.provisional and rule.threshold == embedder.card.sections["threshold"]["cosine"]


@every_embedder
def test_int8_card_describes_its_file_and_the_float32_model_it_came_from(name: str) -> None:
    int8, float32 = load_card(embedder_card(name, "int8")), load_card(embedder_card(name))
    assert hashlib.sha256(packaged_model_path(int8.file).read_bytes()).hexdigest() == int8.sha256
    assert int8.sections["source"]["sha256"] == float32.sha256
    assert int8.sections["source"]["conversion"] == f"python models/quantize_embedder.py {name}"
    for key, value in int8.sections["alignment"].items():  # the int8 model sees the same chip
        assert float32.sections["alignment"][key] == value, key
    assert int8.sections["inputs"][0]["shape"] == float32.sections["inputs"][0]["shape"]


@every_embedder
def test_the_simulator_copies_the_variants_own_table(name: str) -> None:
    from dispenser.sim.similarity import simulator_table

    card = embedder_card(name, "int8")
    table = simulator_table(None, None, card)
    if "similarity" in load_card(card).sections:
        assert table.status == "measured" and f"{card}.toml" in table.describe()
    else:
        assert table.status == "provisional"


@every_embedder
def test_int8_keeps_templates_and_pair_scores_of_held_out_variants(name: str) -> None:
    """Variants of the calibration faces not used for calibration (another seed): the
    templates and the scores between them stay within the card's recorded fidelity."""
    from dispenser.models.quantize_embedder import calibration_chips

    fidelity = load_card(embedder_card(name, "int8")).sections["fidelity"]
    for face in _faces(name):
        variants = np.stack(list(calibration_chips(face, count=16, seed=1)))
        int8, float32 = (_templates(name, p, variants) for p in ("int8", "float32"))
        cosines = np.einsum("ij,ij->i", int8, float32)
        upper = np.triu_indices(len(variants), 1)
        shift = np.abs((int8 @ int8.T) - (float32 @ float32.T))[upper]
        print(f"{name} int8 vs float32: cosine min {cosines.min():.4f}, "
              f"pair-score shift max {shift.max():.4f}")
        assert cosines.min() >= fidelity["min_cosine_face_variants"]
        assert shift.max() <= fidelity["max_pair_score_shift"]


def test_dlib_int8_agrees_with_float32_on_dlibs_golden_chips() -> None:
    """The chips dlib itself cut (tests/data/dlib_resnet_golden.npz), not only variants."""
    with np.load(DATA / "dlib_resnet_golden.npz") as golden:
        chips = np.asarray(golden["chips"])
    cosines = np.einsum("ij,ij->i", _templates("dlib", "int8", chips),
                        _templates("dlib", "float32", chips))
    bound = load_card(embedder_card("dlib", "int8")).sections["fidelity"]
    assert cosines.min() >= bound["min_cosine_golden_chips"] - 0.001


@every_embedder
def test_quantisation_reproduces_the_committed_int8_model(tmp_path: Path, name: str) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx (extra 'convert') is needed to quantise")
    import onnxruntime
    from dispenser.models.quantize_embedder import RECIPES, quantize

    card = load_card(embedder_card(name, "int8"))
    pinned = (card.sections["source"]["onnxruntime_version"],
              card.sections["source"]["onnx_version"], card.sections["source"]["machine"])
    if (onnxruntime.__version__, onnx.__version__, platform.machine()) != pinned:
        pytest.skip(f"the committed int8 bytes were made with onnxruntime/onnx/CPU {pinned}")
    out = tmp_path / "int8.onnx"
    quantize(RECIPES[name], _faces(name), out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == card.sha256

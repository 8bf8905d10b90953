"""Invariant 6, on what the running program actually loads: the face pipeline creates
exactly the documented detector and identity sessions, each with exactly its card's
outputs (boxes, scores, landmarks; one template vector). Any other session or output fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dispenser.audit.model_checks import DOCUMENTED_MODELS, MODEL_SUFFIXES
from dispenser.audit.registry import CheckFailed
from dispenser.vision.model_files import load_card

_LIST_SESSIONS = """
import gc, json
import onnxruntime as ort
from dispenser.config import Settings
from dispenser.vision import FacePipeline
pipe = FacePipeline(Settings().vision)
sessions = [o for o in gc.get_objects() if isinstance(o, ort.InferenceSession)]
print(json.dumps(sorted([[x.name for x in s.get_outputs()] for s in sessions])))
"""


def test_the_pipeline_loads_only_documented_sessions_with_documented_outputs() -> None:
    done = subprocess.run([sys.executable, "-c", _LIST_SESSIONS], capture_output=True,
                          text=True, timeout=180, check=True)
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    documented = {}
    for name in DOCUMENTED_MODELS:
        card = load_card(name)
        if card.file.endswith(".onnx"):
            documented[name] = [o.name for o in card.outputs]
    unexplained = [outs for outs in loaded if outs not in documented.values()]
    assert unexplained == []
    expected = sorted([documented[n] for n in ("mtcnn_pnet", "mtcnn_rnet", "mtcnn_onet",
                                               "face_recognition_sface_2021dec")])
    assert loaded == expected
    embedder_outputs = load_card("face_recognition_sface_2021dec").outputs
    assert [(o.name, o.shape) for o in embedder_outputs] == [("embedding", ("batch", 128))]


def test_the_audit_inventories_the_public_model_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inventory reads `model_files.models_dir()`: an extra, uncarded model file there
    (say an age classifier) fails it; the real directory passes."""
    from dispenser.audit.model_checks import model_inventory
    from dispenser.vision import model_files

    assert model_inventory()["model_files"] == len(
        [p for p in model_files.models_dir().iterdir() if p.suffix in MODEL_SUFFIXES])
    for path in model_files.models_dir().iterdir():
        (tmp_path / path.name).symlink_to(path)
    (tmp_path / "age_gender.onnx").write_bytes(b"not a documented model")
    monkeypatch.setattr(model_files, "models_dir", lambda: tmp_path)
    with pytest.raises(CheckFailed, match=r"model files without a card: age_gender\.onnx"):
        model_inventory()

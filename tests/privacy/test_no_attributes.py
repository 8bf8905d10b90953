"""Invariant 6, on what the running program actually loads: the face pipeline creates
exactly the documented detector and identity sessions, each with exactly its card's
outputs (boxes, scores, landmarks; one template vector). Any other session or output fails.
"""

from __future__ import annotations

import json
import subprocess
import sys

from dispenser.audit.model_checks import DOCUMENTED_MODELS
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

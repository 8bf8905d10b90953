"""Invariant 6 (no attributes): only the documented detector, landmark and identity models
ship, and each produces exactly its documented outputs."""

from __future__ import annotations

from dispenser.audit.registry import Evidence, check, require
from dispenser.interrupts import import_deferring_ctrl_c

# The complete list of models this project may ship, with the one job each does. A model
# file that is not here, or a model here whose graph has any other output, fails the audit.
DOCUMENTED_MODELS: dict[str, str] = {
    "mtcnn_pnet": "face detection stage 1: face/no-face scores and box offsets",
    "mtcnn_rnet": "face detection stage 2: face/no-face scores and box offsets",
    "mtcnn_onet": "face detection stage 3: scores, box offsets and 5 landmarks",
    "face_recognition_sface_2021dec": "identity template (128 numbers), nothing else",
    "face_recognition_sface_2021dec_int8": "the same identity model, int8-quantised",
    "dlib_face_recognition_resnet_model_v1": "identity template (128 numbers), nothing else",
    "dlib_face_recognition_resnet_model_v1_int8": "the same identity model, int8-quantised",
    "shape_predictor_5_face_landmarks": "5 landmark points for alignment",
}
# Any file with one of these suffixes is a model and needs a card.
MODEL_SUFFIXES = (".onnx", ".npz", ".dat", ".pb", ".tflite", ".pt", ".pth", ".bin", ".ort")


@check("model-inventory", invariant="6. No attributes",
       claim="Only a face detector, a 5-point landmark model and an identity model are "
             "installed: no age, gender, emotion, ethnicity or other classifier exists.",
       method="List every model file in the installed package; each must have a card "
              "naming one of the documented models, with a matching sha256.")
def model_inventory() -> Evidence:
    from dispenser.vision.model_files import load_card, models_dir, read_verified_model

    folder = models_dir()
    files = sorted(p.name for p in folder.iterdir() if p.suffix in MODEL_SUFFIXES)
    require(bool(files), f"no model files found in {folder}")
    carded: dict[str, str] = {}
    for card_path in sorted(folder.glob("*.toml")):
        card = load_card(card_path.stem, card_path)
        require(card.name in DOCUMENTED_MODELS,
                f"model card {card_path.name} describes an undocumented model {card.name}")
        read_verified_model(card, folder / card.file)
        carded[card.file] = card.name
    unexplained = [f for f in files if f not in carded]
    require(not unexplained, f"model files without a card: {', '.join(unexplained)}")
    return {"model_files": len(files), "names": ", ".join(sorted(set(carded.values())))}


@check("model-outputs", invariant="6. No attributes",
       claim="Each loaded model produces exactly its documented outputs (boxes, scores, "
             "landmarks, one template vector) and nothing else.",
       method="Load every ONNX model with onnxruntime and compare the session's output "
              "names and shapes with its card; any extra output fails.")
def model_outputs() -> Evidence:
    ort = import_deferring_ctrl_c("onnxruntime")

    from dispenser.vision.model_files import load_card, models_dir, read_verified_model

    folder = models_dir()
    checked = 0
    for card_path in sorted(folder.glob("*.toml")):
        card = load_card(card_path.stem, card_path)
        if not card.file.endswith(".onnx"):
            continue
        session = ort.InferenceSession(read_verified_model(card, folder / card.file),
                                       providers=["CPUExecutionProvider"])
        got = [(o.name, len(o.shape)) for o in session.get_outputs()]
        want = [(o.name, len(o.shape)) for o in card.outputs]
        require(got == want, f"{card.name} outputs {got}, its card documents {want}")
        checked += 1
    require(checked > 0, "no ONNX model was checked")
    return {"onnx_models_checked": checked}

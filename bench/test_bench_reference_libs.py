"""Speed against the reference libraries, measured in the same run: face_recognition (frame
to template) and dlib's own C++ (one face's descriptor).

Run: pytest bench/test_bench_reference_libs.py -s  (figures go to docs/performance.md,
"Against face_recognition and dlib").

The references are dlib-bin (dlib's compiled wheel), face-recognition-models and
face-recognition 1.3.0. The first two come with the `bench` extra; face-recognition is
installed without its dependencies, because it requires the `dlib` distribution (a C++
build from source) while dlib-bin already provides the very same `dlib` module:

    pip install '.[test,bench]' && pip install --no-deps face-recognition==1.3.0

Without them these tests skip, naming what is missing.

* `test_frame_to_template_vs_face_recognition`: one 640x480 frame -> one template, on the
  frames of bench_faces (one real face each, found by both). Ours is what the service does
  with the shipped settings: `FacePipeline.detect` (MTCNN + quality gate) and
  `FacePipeline.embed` (the embedder's alignment and the embedder, SFace by default) on
  each frame, and the scrub pass it runs once per decision, here once per round of the
  three frames (a hold embeds up to six). The reference is
  `face_recognition.face_encodings(frame)`, the library's defaults: HOG detector upsampled
  once, 5-point landmarks, dlib's ResNet, one jitter. Target: ours <= 1/3 of theirs.
* `test_embed_vs_dlib_cpp`: one aligned chip -> one template. Each shipped embedder's
  `Embedder.embed` (onnxruntime, 1 and 2 threads) against
  `dlib.face_recognition_model_v1.compute_face_descriptor(chip)` on dlib's own 150x150
  chip of the same face (dlib computes on one thread). Target: 0.1x dlib's time per face;
  EMBED_BOUNDS and docs/performance.md say which model meets it on the build machine.

Both take turns with their references (bench_timing.timed_rounds), so that other load on
the machine hits every contender alike, and assert the median over the rounds of the ratio
within a round (the build machine's speed drifts by 2x and more over a run); they print
each contender's best time too. Nothing here prints or keeps a frame or a template.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from bench_faces import camera_frames_bgr, face_chip
from bench_timing import median_ratios, timed_rounds

from dispenser.config import VisionSettings
from dispenser.embedders import EMBEDDER_MODELS, EMBEDDER_NAMES
from dispenser.vision import FacePipeline
from dispenser.vision.embedder import Embedder

INSTALL = "pip install '.[bench]' && pip install --no-deps face-recognition==1.3.0"
THREADS = (1, 2)
DEFAULT_EMBEDDER = EMBEDDER_NAMES[0]
# Frame to template: the target, met with a wide margin (docs/performance.md).
FRAME_TARGET = 1 / 3
# Embed per face against dlib's C++: the target is 0.1. The network of the dlib
# embedder meets it on onnxruntime (0.05-0.09 on the build machine). SFace, with twice its
# multiply-adds, does not: 0.17-0.26 in float32 and 0.085-0.155 in int8 there. Their bounds
# are what was measured plus a margin for load, so that a regression shows while the target
# stays open; docs/performance.md, "Against face_recognition and dlib", says what would
# close the gap.
EMBED_TARGET = 0.1
EMBED_BOUNDS = {("dlib", "float32"): EMBED_TARGET, ("sface", "float32"): 0.35,
                ("sface", "int8"): 0.2}


@pytest.fixture(scope="module")
def face_recognition() -> ModuleType:
    """The face_recognition package, or a skip naming the install command."""
    for module in ("dlib", "face_recognition_models"):
        # face_recognition calls quit() when face_recognition_models is missing: check first
        pytest.importorskip(module, reason=f"{module} is not installed ({INSTALL})")
    return pytest.importorskip("face_recognition",
                               reason=f"face_recognition is not installed ({INSTALL})")


def _ratios(contenders: dict[str, Callable[[], object]], reference: str, rounds: int,
            calls: int = 1) -> dict[str, float]:
    """Interleaved rounds of the contenders; prints each one's best time per call (of
    `calls` in one run) and its median ratio to the reference, and returns those ratios."""
    measured = timed_rounds(contenders, rounds)
    ratios = median_ratios(measured, reference)
    for name, ratio in ratios.items():
        best = min(r[name] for r in measured) / calls
        print(f"{name}: best {best * 1e3:.1f} ms, median ratio {ratio:.3f} x {reference}")
    return ratios


def test_frame_to_template_vs_face_recognition(face_recognition: ModuleType) -> None:
    frames_bgr = camera_frames_bgr()
    frames_rgb = [np.ascontiguousarray(frame[:, :, ::-1]) for frame in frames_bgr]
    out = np.zeros(128, np.float32)

    def ours(pipe: FacePipeline) -> Callable[[], None]:
        def run() -> None:
            for frame in frames_bgr:
                (face,) = pipe.detect(frame)
                pipe.embed(frame, face, out)
            pipe.scrub()  # once per decision, as the service does after a hold's embeddings
        return run

    def theirs() -> None:
        for rgb in frames_rgb:
            (_,) = face_recognition.face_encodings(rgb)  # exactly one face, as ours

    pipes = {t: FacePipeline(VisionSettings(threads=t)) for t in THREADS}
    try:
        contenders = {f"ours ({DEFAULT_EMBEDDER}), {t} thread(s)": ours(pipe)
                      for t, pipe in pipes.items()}
        contenders["face_recognition"] = theirs
        ratios = _ratios(contenders, "face_recognition", rounds=7, calls=len(frames_bgr))
    finally:
        for pipe in pipes.values():
            pipe.close()
        out.fill(0)
    for t in THREADS:
        assert ratios[f"ours ({DEFAULT_EMBEDDER}), {t} thread(s)"] <= FRAME_TARGET


def _dlib_chip(face_recognition: ModuleType) -> np.ndarray:
    """dlib's own 150x150 chip of the face in the first frame: HOG box, 5-point shape,
    get_face_chip, as face_recognition.face_encodings makes it."""
    api: Any = face_recognition.api
    rgb = np.ascontiguousarray(camera_frames_bgr()[0][:, :, ::-1])
    (box,) = api.face_detector(rgb, 1)
    shape = api.pose_predictor_5_point(rgb, box)
    return np.asarray(api.dlib.get_face_chip(rgb, shape, size=150, padding=0.25))


def test_embed_vs_dlib_cpp(face_recognition: ModuleType) -> None:
    reference = "dlib C++ compute_face_descriptor"
    encoder: Any = face_recognition.api.face_encoder
    dlib_chip = _dlib_chip(face_recognition)
    contenders: dict[str, Callable[[], object]] = {
        reference: lambda: encoder.compute_face_descriptor(dlib_chip)}
    out = np.zeros(128, np.float32)
    embedders = []
    for (name, precision), model in EMBEDDER_MODELS.items():
        for threads in THREADS:
            embedder = Embedder(threads=threads, model=model, batch_capacity=1)
            embedders.append(embedder)
            chip = face_chip(embedder)
            contenders[f"{name} {precision} {threads}t"] = (
                lambda e=embedder, c=chip: e.embed(c, out))
    try:
        ratios = _ratios(contenders, reference, rounds=20)
    finally:
        for embedder in embedders:
            embedder.close()
        out.fill(0)
    for (name, precision), bound in EMBED_BOUNDS.items():
        for threads in THREADS:
            assert ratios[f"{name} {precision} {threads}t"] <= bound

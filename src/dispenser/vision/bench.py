"""Vision measurements for `dispenser bench`: detect, align, embed, on this machine.

Registered in `dispenser.perf` (see its docstring). The frame is the public-domain
astronaut portrait shipped in `dispenser.data` (a public figure's NASA photo, not a
visitor's face), cropped to 4:3 so a 640x480 and a 320x240 frame each hold one face and
every stage of the detector runs. The detector's minimum face size is lowered to 40 px so
the face (~56 px high) is found in the 320x240 frame too. A frame with no face is measured
as well: that is what the machine does most of the day. Comparisons are made in the same
run: more threads against 1, the int8 embedder against float32. Thread counts are 1, 2 and
every core of the machine (4 on a Raspberry Pi 4/5), so a board owner measures the setting
the service will run with (`vision.threads`).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import os
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from dispenser import perf
from dispenser.config import Settings
from dispenser.embedders import EMBEDDER_MODELS
from dispenser.vision.align import aligner_for
from dispenser.vision.embedder import Embedder
from dispenser.vision.face import Face
from dispenser.vision.images import load_image_bgr
from dispenser.vision.pipeline import FacePipeline

FRAME_SIZES = ((640, 480), (320, 240))
THREAD_COUNTS = tuple(sorted({1, 2, os.cpu_count() or 1}))
BENCH_MIN_FACE_PX = 40


def _frame(size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """The shipped portrait's top 3/4 (4:3), resized to `size`, as BGR."""
    path = Path(str(importlib.resources.files("dispenser.data").joinpath("astronaut.png")))
    portrait = load_image_bgr(path)
    crop = portrait[: portrait.shape[1] * 3 // 4]
    return np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)


def _pipeline(threads: int) -> FacePipeline:
    vision = dataclasses.replace(Settings().vision, min_face_px=BENCH_MIN_FACE_PX)
    return FacePipeline(vision, threads=threads)


def _rgb_and_face() -> tuple[npt.NDArray[np.uint8], Face]:
    """The 640x480 frame as RGB (what align takes) and the one face the pipeline finds in it.

    The caller owns the RGB copy and zeroes it when done.
    """
    frame = _frame(FRAME_SIZES[0])
    with _pipeline(1) as pipe:
        (face,) = pipe.detect(frame)
    return np.ascontiguousarray(frame[:, :, ::-1]), face


@perf.measurement("vision.detect", "face detection + quality gate per frame (1, 2, all cores)")
def _detect(options: perf.Options) -> list[perf.Result]:
    frames = {f"{w}x{h}": _frame((w, h)) for w, h in FRAME_SIZES}
    frames["640x480 no face"] = np.full((480, 640, 3), 128, np.uint8)
    timed: dict[tuple[str, int], perf.Result] = {}
    for threads in THREAD_COUNTS:
        pipe = _pipeline(threads)
        for label, frame in frames.items():
            expected = 0 if "no face" in label else 1
            if len(pipe.detect(frame)) != expected:
                raise RuntimeError(f"bench frame {label}: expected {expected} face(s)")
            timed[label, threads] = perf.timed(f"vision.detect {label} {threads}t",
                                               partial(pipe.detect, frame), options)
        pipe.close()
    return [dataclasses.replace(r, note=f"{timed[label, 1].value / r.value:.2f}x 1 thread")
            if threads != 1 else r for (label, threads), r in timed.items()]


@perf.measurement("vision.align", "5 landmarks -> each embedder's chip (one face)")
def _align(options: perf.Options) -> list[perf.Result]:
    rgb, face = _rgb_and_face()
    results = []
    try:
        for (name, precision), model in EMBEDDER_MODELS.items():
            if precision != "float32":
                continue
            embedder = Embedder(threads=1, model=model, batch_capacity=1)
            align, chip = aligner_for(embedder.card), np.zeros(embedder.chip_shape, np.uint8)
            try:
                results.append(perf.timed(
                    f"vision.align {name}",
                    partial(align, rgb, face.box, face.landmarks, chip), options))
            finally:
                chip.fill(0)
    finally:
        rgb.fill(0)
    return results


@perf.measurement("vision.embed", "chip -> template, each embedder (1, 2, all cores)")
def _embed(options: perf.Options) -> list[perf.Result]:
    rgb, face = _rgb_and_face()
    out = np.zeros(128, np.float32)
    results: dict[tuple[str, str, int], perf.Result] = {}
    try:
        for (name, precision), model in EMBEDDER_MODELS.items():
            for threads in THREAD_COUNTS:
                embedder = Embedder(threads=threads, model=model, batch_capacity=1)
                chip = np.zeros(embedder.chip_shape, np.uint8)
                aligner_for(embedder.card)(rgb, face.box, face.landmarks, chip)
                try:
                    results[name, precision, threads] = perf.timed(
                        f"vision.embed {name} {precision} {threads}t",
                        partial(embedder.embed, chip, out), options)
                finally:
                    chip.fill(0)
    finally:
        rgb.fill(0)
        out.fill(0)
    return [dataclasses.replace(r, note=f"{results[name, 'float32', threads].value / r.value:.2f}x "
                                        "float32") if precision != "float32" else r
            for (name, precision, threads), r in results.items()]

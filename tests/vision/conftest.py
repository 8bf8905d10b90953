"""Fixtures for the face pipeline tests: the two public-domain photos in tests/data, dlib's
golden outputs, and one FacePipeline per test session (loading the four ONNX models takes a
second)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from dispenser.config import Settings
from dispenser.vision.model_files import ModelCard, load_card, packaged_model_path
from dispenser.vision.pipeline import FacePipeline

DATA = Path(__file__).resolve().parent.parent / "data"


def _read_only_image(name: str) -> np.ndarray:
    """tests/data/`name` as BGR, read-only: a session fixture is shared by every test."""
    image = cv2.imread(str(DATA / name), cv2.IMREAD_COLOR)
    assert image is not None, name
    image.flags.writeable = False
    return image


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """Eileen Collins, NASA, public domain (tests/data/astronaut.md): one frontal face."""
    return _read_only_image("astronaut.png")


@pytest.fixture(scope="session")
def astronaut_rgb(astronaut_bgr: np.ndarray) -> np.ndarray:
    """The astronaut in RGB (what the detector, align and the shape predictor take)."""
    rgb = np.ascontiguousarray(astronaut_bgr[:, :, ::-1])
    rgb.flags.writeable = False
    return rgb


@pytest.fixture(scope="session")
def camera_bgr() -> np.ndarray:
    """Lav Varshney's CC0 'camera' photo (tests/data/camera.md): a different, turned face."""
    return _read_only_image("camera.png")


@pytest.fixture(scope="session")
def dlib_golden() -> dict[str, np.ndarray]:
    """dlib 20.0.1's own outputs (tests/data/dlib_resnet_golden.npz, read-only): chips and
    raw descriptors, and the astronaut's HOG box and 5 landmarks."""
    with np.load(DATA / "dlib_resnet_golden.npz") as z:
        arrays = {k: z[k] for k in z.files}
    for array in arrays.values():
        array.flags.writeable = False
    return arrays


@pytest.fixture(scope="session")
def card_and_session() -> Callable[[str], tuple[ModelCard, ort.InferenceSession]]:
    """Model name -> its card and a plain CPU onnxruntime session on the packaged file the
    card names (no settings of ours: what any auditor's onnxruntime would load)."""

    def open_model(name: str) -> tuple[ModelCard, ort.InferenceSession]:
        card = load_card(name)
        session = ort.InferenceSession(str(packaged_model_path(card.file)),
                                       providers=["CPUExecutionProvider"])
        return card, session

    return open_model


@pytest.fixture(scope="session")
def face_pipeline() -> Iterator[FacePipeline]:
    with FacePipeline(Settings().vision, threads=2) as pipe:
        yield pipe

"""Fixtures for the face pipeline tests: the two public-domain photos in tests/data, and one
FacePipeline per test session (loading the four ONNX models takes a second)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.config import Settings
from dispenser.vision.pipeline import FacePipeline

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="session")
def astronaut_bgr() -> np.ndarray:
    """Eileen Collins, NASA, public domain (tests/data/astronaut.md): one frontal face."""
    image = cv2.imread(str(DATA / "astronaut.png"), cv2.IMREAD_COLOR)
    assert image is not None
    image.flags.writeable = False
    return image


@pytest.fixture(scope="session")
def camera_bgr() -> np.ndarray:
    """Lav Varshney's CC0 'camera' photo (tests/data/camera.md): a different, turned face."""
    image = cv2.imread(str(DATA / "camera.png"), cv2.IMREAD_COLOR)
    assert image is not None
    image.flags.writeable = False
    return image


@pytest.fixture(scope="session")
def face_pipeline() -> Iterator[FacePipeline]:
    with FacePipeline(Settings().vision, threads=2) as pipe:
        yield pipe

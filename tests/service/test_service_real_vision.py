"""The service with the real vision pipeline (ONNX detector, quality gate, shape predictor,
embedder) and the real FaceTracker on a real face photo: served, recognised and refused when
back (at another place and size in the frame), served again after the deny window.
Scripted frames, virtual clock, the real store, the in-memory motor double. (The project
ships one frontal face photo; the camera man in tests/data/camera.png looks sideways and is
rightly refused by the quality gate, which this test also shows.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from service_doubles import FakeMotor

from dispenser.clock import VirtualClock
from dispenser.config import Settings, VisionSettings
from dispenser.service import DispenserService, Message, RecordingDisplay, State
from dispenser.service.frames import ScriptedSource
from dispenser.store import TemplateStore
from dispenser.store.rule import rule_for
from dispenser.vision import FacePipeline, FaceTracker

FPS = 10


@pytest.fixture(scope="module")
def pipeline() -> Iterator[FacePipeline]:
    with FacePipeline(VisionSettings(threads=2)) as pipe:
        yield pipe


@pytest.fixture(scope="module")
def scenes() -> dict[str, np.ndarray]:
    """640x480 frames: an empty wall; the astronaut centred; the astronaut again, smaller
    and further left (another visit, another stance); the camera man (face turned away)."""
    data = Path(__file__).resolve().parent.parent / "data"
    empty = np.full((480, 640, 3), 90, np.uint8)
    photo = cv2.imread(str(data / "astronaut.png"))
    astronaut = empty.copy()
    astronaut[:, 64:576] = photo[16:496]
    again = empty.copy()
    again[40:450, 10:420] = cv2.resize(photo, (410, 410), interpolation=cv2.INTER_AREA)
    big = cv2.resize(cv2.imread(str(data / "camera.png")), None, fx=2.0, fy=2.0,
                     interpolation=cv2.INTER_CUBIC)
    cameraman = np.ascontiguousarray(big[0:480, 130:770])
    return {"empty": empty, "astronaut": astronaut, "again": again, "cameraman": cameraman}


def test_served_recognised_and_refused_then_served_after_the_window(
        pipeline: FacePipeline, scenes: dict[str, np.ndarray]) -> None:
    clock = VirtualClock(1000.0)
    settings = Settings()
    source = ScriptedSource()
    motor = FakeMotor()
    display = RecordingDisplay()
    with TemplateStore(settings.store, rule=rule_for(settings), clock=clock,
                       start_sweeper=False, zeroise_on_signals=False) as store:
        svc = DispenserService(settings, clock=clock, frames=source, store=store,
                               pipeline=pipeline, motor=motor, display=display,
                               tracker=FaceTracker(clock))

        def show(scene: str, seconds: float) -> None:
            for _ in range(round(seconds * FPS)):
                source.push(scenes[scene])
                svc.step()
                if svc.motor_busy:
                    assert svc.wait_motor(5.0)
                clock.advance(1.0 / FPS)

        try:
            show("empty", 1.0)
            show("astronaut", 4.5)
            assert motor.dispensed == [600]
            assert Message.HOLD_STILL in display.shown and Message.HERE_YOU_GO in display.shown
            show("empty", 6.0)
            assert svc.state is State.IDLE
            show("cameraman", 5.0)               # face turned away: asked to look, never decided
            assert svc.counters.decisions == 1
            assert display.current is Message.LOOK_AT_CAMERA
            show("empty", 2.0)
            show("again", 4.5)                   # back, elsewhere in the frame: refused
            assert motor.dispensed == [600]
            assert svc.counters.denied == 1
            assert display.current is Message.TRY_LATER
            show("empty", 6.0)
            clock.advance(settings.store.deny_window_s)
            show("again", 4.5)                   # after the deny window: served again
            assert motor.dispensed == [600, 600]
            assert svc.hold.buffers_zero()
            assert svc.counters.embeddings <= 3 * 6   # at most 2K per hold, three holds
        finally:
            svc.close()

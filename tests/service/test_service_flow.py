"""The service end to end with a scripted frame source, synthetic templates, the virtual
clock, the real template store (swept by hand, no sweeper thread) and an in-memory double
of the motor (tests/service/conftest.py). The same scenarios against the real MotorLink
and firmware_sim: test_service_end_to_end.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
from service_doubles import (
    FakeFace,
    FakePipeline,
    FakeQuality,
    Person,
    Rig,
    draw,
    identity,
    lookalike,
)

from dispenser.service import Message, State


def _served_then_left(rig: Rig, pid: int, stay_s: float = 6.0) -> None:
    rig.scene = [Person(pid)]
    rig.run_for(stay_s)
    rig.scene = []
    rig.run_for(3.0)


def test_served_then_denied_within_the_window_then_served_after_it(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.run_for(1.0)
    _served_then_left(rig, 1)
    assert rig.motor.dispensed == [600]
    assert rig.svc.counters.served == 1
    assert Message.HERE_YOU_GO in rig.display.shown

    rig.clock.advance(60.0)          # back a minute later: refused, nothing dispensed
    _served_then_left(rig, 1)
    assert rig.motor.dispensed == [600]
    assert rig.svc.counters.denied == 1
    assert rig.display.shown[-2:] == [Message.TRY_LATER, Message.WELCOME]

    rig.clock.advance(540.0)         # past the deny window: served again
    _served_then_left(rig, 1)
    assert rig.motor.dispensed == [600, 600]
    assert rig.svc.counters.served == 2
    counters = rig.store.counters()
    assert counters.commits == 2 and counters.rollbacks == 0


def test_the_path_through_the_states(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    _served_then_left(rig, 1)
    assert rig.states() == ["face_seen", "hold_still", "decide", "dispensing", "served",
                            "idle"]


def test_no_decision_before_hold_still_s(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.scene = [Person(1)]
    rig.run_for(2.8)                 # 0.1 s to be seen, 0.1 s to count as steady, < 3 s held
    assert rig.svc.counters.decisions == 0
    assert rig.svc.state is State.HOLD_STILL
    assert rig.display.last_progress is not None and 0.7 < rig.display.last_progress < 1.0
    rig.run_for(0.5)
    assert rig.svc.counters.decisions == 1


def test_moving_restarts_the_hold(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    person = Person(1)
    rig.scene = [person]
    for _ in range(10):              # 5 s of fidgeting: 10 px every 0.5 s
        rig.run_for(0.5)
        person.x += 10 if person.x < 80 else -60
    assert rig.svc.counters.decisions == 0
    assert "face_seen" in rig.states()[2:]   # fell back from hold_still at least once
    rig.run_for(3.5)                 # then holds still
    assert rig.svc.counters.decisions == 1


def test_a_person_who_stays_a_minute_gets_one_ribbon(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.scene = [Person(1)]
    rig.run_for(60.0)
    assert rig.motor.dispensed == [600]
    assert rig.svc.counters.served == 1
    # re-armed by the 30 s cool-down once, and the store refused the repeat
    assert rig.svc.counters.decisions == 2
    assert rig.svc.counters.denied == 1


def test_two_people_alternating(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    for _ in range(2):
        _served_then_left(rig, 1)
        _served_then_left(rig, 2)
        rig.clock.advance(30.0)
    # each served once, each refused on the second round
    assert rig.motor.dispensed == [600, 600]
    assert rig.svc.counters.served == 2
    assert rig.svc.counters.denied == 2


def test_several_faces_the_largest_is_served_and_only_once(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    near, far = Person(1, x=10, size=60), Person(2, x=100, y=40, size=30)
    rig.scene = [near, far]
    rig.run_for(4.0)
    assert rig.svc.counters.served == 1
    assert _is_stored(rig, 1) and not _is_stored(rig, 2)
    rig.run_for(8.0)                 # the far one then gets their own turn
    assert rig.svc.counters.served == 2
    assert _is_stored(rig, 2)


def test_a_face_that_leaves_is_never_decided(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.scene = [Person(1)]
    rig.run_for(2.5)
    assert rig.svc.state is State.HOLD_STILL
    rig.scene = []
    rig.run_for(5.0)
    assert rig.svc.counters.decisions == 0
    assert rig.svc.state is State.IDLE
    assert rig.svc.hold.buffers_zero()


def test_template_buffers_are_zero_after_every_decision(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.scene = [Person(1)]
    while rig.svc.counters.decisions == 0:
        rig.tick()
    assert rig.svc.hold.buffers_zero()
    assert rig.svc.hold.embeds <= 6      # at most 2K embeddings per hold (K = 3)


def test_a_small_face_is_asked_to_come_closer(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.scene = [Person(1, size=12)]
    rig.run_for(5.0)
    assert rig.svc.counters.decisions == 0
    assert rig.display.current is Message.COME_CLOSER


def test_idle_cost_no_embedder_and_slow_detection_when_nobody_is_there(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.run_for(60.0)                # 600 empty frames
    assert rig.pipeline.embed_calls == 0
    # static scene: the motion gate says no, except its safety run every 10 s
    assert rig.pipeline.detect_calls <= 7
    assert rig.svc.counters.idle_skips >= 593
    rig.scene = [Person(1)]
    rig.run_for(0.6)                 # arrival is noticed within the idle detection period
    assert rig.svc.state in (State.FACE_SEEN, State.HOLD_STILL)


def test_motion_without_a_face_is_detected_at_most_at_idle_detect_hz(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rng = np.random.default_rng(0)
    for _ in range(100):             # 10 s of flickering light, nobody there
        level = int(rng.integers(0, 200))
        rig.source.push(np.full((120, 160, 3), level, np.uint8))
        rig.svc.step()
        rig.clock.advance(0.1)
    assert rig.pipeline.detect_calls <= 21     # 2 Hz over 10 s (+ the first frame)
    assert rig.pipeline.embed_calls == 0


def test_a_bad_frame_never_crashes(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    for bad in (np.zeros((10, 10, 3), np.uint8), np.zeros((120, 160), np.uint8),
                np.zeros((120, 160, 3), np.float32), np.zeros((120, 160, 4), np.uint8)):
        rig.source.push(bad)
        rig.svc.step()
    rig.pipeline.fail_next_detect = True
    rig.scene = [Person(1)]
    rig.run_for(4.0)
    assert rig.svc.counters.bad_frames == 5
    assert rig.svc.counters.served == 1


def _is_stored(rig: Rig, pid: int) -> bool:
    """True if the store would refuse person `pid` now (their template is live)."""
    decision = rig.store.decide(identity(pid))
    if decision.reservation is not None:
        rig.store.rollback(decision.reservation)
    return not decision.dispense


def test_closing_during_a_dispense_resolves_it_first(rig_factory: Callable[..., Rig]) -> None:
    import threading

    rig = rig_factory()
    release = threading.Event()
    finish = rig.motor.dispense

    def slow(length_mm: int) -> object:
        release.wait(5.0)
        return finish(length_mm)

    rig.motor.dispense = slow
    rig.scene = [Person(1)]
    rig.source.push(draw(rig.scene))
    while not rig.svc.motor_busy:             # hold still until the dispense starts
        rig.source.push(draw(rig.scene))
        rig.svc.step()
        rig.clock.advance(0.1)
    threading.Timer(0.2, release.set).start()
    rig.svc.close()                           # waits for the controller, then commits
    assert rig.motor.dispensed == [600]
    assert rig.store.counters().commits == 1
    assert rig.svc.counters.served == 1
    assert rig.svc.hold.buffers_zero()


class TurningPipeline(FakePipeline):
    """Person 1 turned (`turned`): the face still passes the gate but ranks low, and its
    template agrees only 0.3 with the frontal one. The detector's score is the same either
    way, as the real detector's is (~1.0 on every face that passes the gate)."""

    turned = False

    def detect(self, frame: np.ndarray) -> list[FakeFace]:
        rank = 0.1 if self.turned else 0.9
        return [replace(f, quality=FakeQuality(f.quality.ok, f.quality.reason, rank))
                for f in super().detect(frame)]

    def embed(self, frame: np.ndarray, face: FakeFace, out: np.ndarray) -> None:
        super().embed(frame, face, out)
        if face.quality.frame_rank < 0.5:
            out[:] = lookalike(9, 1, 0.3)


def test_a_hold_keeps_its_most_frontal_frames(rig_factory: Callable[..., Rig]) -> None:
    """A repeat visitor who is still turning towards the machine when the hold starts is
    recognised: the frontal frames later in the hold replace the turned first ones."""
    pipeline = TurningPipeline()
    rig = rig_factory(pipeline=pipeline)
    _served_then_left(rig, 1)
    assert rig.motor.dispensed == [600]
    rig.clock.advance(60.0)
    rig.scene = [Person(1)]
    pipeline.turned = True
    rig.run_for(1.5)                 # three embeddings of the turned face fill the hold
    pipeline.turned = False
    rig.run_for(4.5)
    rig.scene = []
    rig.run_for(3.0)
    assert rig.svc.counters.decisions == 2
    assert rig.motor.dispensed == [600] and rig.svc.counters.denied == 1

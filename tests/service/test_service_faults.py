"""Fault paths: controller states, failed dispenses (rollback), camera loss with back-off,
a silent camera (watchdog), a store failure. The machine never decides while faulty."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from service_doubles import Person, Rig, identity

from dispenser.clock import VirtualClock
from dispenser.service import Message, State
from dispenser.service.frames import FrameSourceError


@pytest.mark.parametrize(("controller", "message"), [
    ("OUT_OF_PAPER", Message.OUT_OF_PAPER), ("JAMMED", Message.UNAVAILABLE),
    ("DOOR_OPEN", Message.UNAVAILABLE), ("OFFLINE", Message.UNAVAILABLE)])
def test_controller_faults_stop_the_machine_until_cleared(
        rig_factory: Callable[..., Rig], controller: str, message: Message) -> None:
    rig = rig_factory()
    rig.motor.state_name = controller
    rig.scene = [Person(1)]
    rig.run_for(6.0)
    assert rig.svc.state is State.FAULT
    assert rig.display.current is message
    assert rig.pipeline.detect_calls == 0 and rig.pipeline.embed_calls == 0
    assert rig.motor.dispensed == []
    rig.motor.state_name = "READY"
    rig.run_for(5.0)
    assert rig.motor.dispensed == [600]


@pytest.mark.parametrize("error", ["jam", "paper_empty", "timeout", "offline"])
def test_a_failed_dispense_is_rolled_back_and_the_person_served_next_time(
        rig_factory: Callable[..., Rig], error: str) -> None:
    rig = rig_factory()
    rig.motor.fail_with = error
    rig.scene = [Person(1)]
    rig.run_for(4.0)
    assert rig.svc.state is State.FAULT
    assert rig.svc.counters.dispense_failures == 1
    assert rig.store.counters().rollbacks == 1
    expected = Message.OUT_OF_PAPER if error == "paper_empty" else Message.UNAVAILABLE
    assert rig.display.current is expected
    rig.scene = []
    rig.run_for(6.0)
    assert rig.svc.state is State.IDLE
    rig.scene = [Person(1)]                  # not refused: no template was left behind
    rig.run_for(4.0)
    assert rig.motor.dispensed == [600]
    assert rig.svc.counters.denied == 0


def test_a_motor_driver_exception_is_a_failed_dispense(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()

    def broken(length_mm: int) -> None:
        raise OSError("port vanished")

    rig.motor.dispense = broken
    rig.scene = [Person(1)]
    rig.run_for(4.0)
    assert rig.svc.counters.dispense_failures == 1
    assert rig.store.counters().rollbacks == 1


def test_camera_unplugged_retries_with_back_off_and_recovers(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.run_for(1.0)
    opens = rig.source.opens
    rig.source.unplug()
    rig.run_for(60.0)
    assert rig.svc.state is State.FAULT
    assert rig.display.current is Message.UNAVAILABLE
    # back-off 1, 2, 4, 8, 16, 30 s: 6 attempts (the first right away) in a minute
    assert rig.source.opens == opens          # every attempt failed
    rig.source.replug()
    rig.run_for(31.0)
    assert rig.svc.state is State.IDLE
    assert rig.svc.counters.camera_reopens == 1
    rig.scene = [Person(1)]
    rig.run_for(4.0)
    assert rig.motor.dispensed == [600]


def test_camera_missing_at_start_is_a_fault_not_a_crash(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.source.unplug()
    rig.run_for(3.0)
    assert rig.svc.state is State.FAULT
    assert "camera" in rig.svc.faults


def test_a_silent_camera_trips_the_watchdog(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.run_for(1.0)
    for _ in range(120):                      # 12 s without a frame (open but silent)
        rig.svc.step()
        rig.clock.advance(0.1)
    assert rig.svc.counters.stalls == 1
    assert "fault" in rig.states()
    assert rig.svc.counters.camera_reopens == 1   # closed and re-opened after 1 s
    rig.run_for(3.0)                              # frames again
    assert rig.svc.state is State.IDLE
    assert rig.display.current is Message.WELCOME


def test_a_hold_in_progress_is_wiped_when_a_fault_hits(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.scene = [Person(1)]
    rig.run_for(2.0)
    assert rig.svc.state is State.HOLD_STILL
    rig.motor.state_name = "OFFLINE"
    rig.run_for(1.0)
    assert rig.svc.state is State.FAULT
    assert rig.svc.hold.buffers_zero()


def test_a_store_failure_is_a_fault_and_nothing_is_dispensed(
        rig_factory: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    rig = rig_factory()
    rig.store.close()                         # decide() now raises
    asked: list[tuple[np.ndarray, np.ndarray]] = []  # (the probe buffer, what it held)
    closed_decide = rig.store.decide

    def decide(probe: np.ndarray) -> Any:
        asked.append((probe, probe.copy()))
        return closed_decide(probe)

    monkeypatch.setattr(rig.store, "decide", decide)
    rig.scene = [Person(1)]
    rig.run_for(4.0)
    assert rig.svc.state is State.FAULT
    assert rig.motor.dispensed == []
    assert rig.svc.hold.buffers_zero()
    (probe, held), = asked                           # one attempt, about this person,
    assert float(held @ identity(1)) > 0.99
    assert not probe.any()                           # and its probe zeroised after it


def test_status_survives_a_store_without_counters(rig_factory: Callable[..., Rig],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    rig = rig_factory()
    rig.run_for(1.0)

    def broken() -> None:
        raise RuntimeError("store gone")

    monkeypatch.setattr(rig.store, "counters", broken)
    status = rig.svc.status()
    assert status["state"] == "idle" and "store_occupancy" not in status


class _OpensThenFails:
    """A camera that opens every time and never delivers a frame (e.g. a USB camera whose
    stream dies right after the driver accepted it)."""

    name = "camera 0"
    finished = False

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.opened_at: list[float] = []

    def open(self) -> None:
        self.opened_at.append(self._clock.now())

    def read(self) -> None:
        raise FrameSourceError("camera: camera 0 stopped delivering frames (unplugged?)")

    def close(self) -> None:
        pass


def test_back_off_survives_a_camera_that_opens_then_fails(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    camera = _OpensThenFails(rig.clock)
    rig.svc._frames = camera
    for _ in range(1200):                     # 120 s of virtual time
        rig.svc.step()
        rig.clock.advance(0.1)
    gaps = [round(b - a) for a, b in itertools.pairwise(camera.opened_at)]
    assert gaps == [1, 2, 4, 8, 16, 30, 30]
    assert rig.svc.state is State.FAULT


def test_back_off_starts_again_at_one_second_once_frames_came_back(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.source.unplug()
    rig.run_for(20.0)                          # attempts at 0, 1, 3, 7, 15 s
    rig.source.replug()
    rig.run_for(20.0)                          # back at 31 s, frames flow
    opens = rig.source.opens
    rig.source.unplug()
    rig.run_for(0.5)
    rig.source.replug()
    rig.run_for(1.0)
    assert rig.source.opens == opens + 1       # re-opened after 1 s, not 32 s
    assert rig.svc.state is State.IDLE

"""The no-scan button: a shorter ribbon, no face processing, one per interval globally."""

from __future__ import annotations

from collections.abc import Callable

from service_doubles import Person, Rig

from dispenser.service import Message, State
from dispenser.service.button import ButtonGate


def test_button_dispenses_the_short_ribbon_without_any_face_processing(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.run_for(1.0)
    detects = rig.pipeline.detect_calls
    rig.motor.presses = 1
    rig.run_for(1.0)
    assert rig.motor.dispensed == [400]
    assert rig.svc.counters.button_served == 1
    assert rig.pipeline.embed_calls == 0
    assert rig.pipeline.detect_calls == detects      # empty, static scene: nothing ran
    assert rig.store.counters().decisions == 0
    assert "button" in rig.states() and rig.svc.state is State.IDLE


def test_button_is_rate_limited_globally(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.motor.presses = 1
    rig.run_for(1.0)
    rig.motor.presses = 3                    # impatient: three presses between two polls
    rig.run_for(1.0)
    assert rig.motor.dispensed == [400]
    assert rig.svc.counters.button_refused == 3
    assert rig.display.current is Message.BUTTON_WAIT
    rig.run_for(29.0)                        # 31 s after the first ribbon
    rig.motor.presses = 1
    rig.run_for(1.0)
    assert rig.motor.dispensed == [400, 400]


def test_pressing_the_button_while_holding_still_aborts_the_scan(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.scene = [Person(1)]
    rig.run_for(2.0)
    assert rig.svc.state is State.HOLD_STILL
    rig.motor.presses = 1
    rig.run_for(10.0)                        # stays in view: not scanned in this visit
    assert rig.motor.dispensed == [400]
    assert rig.store.counters().decisions == 0
    assert rig.svc.hold.buffers_zero()
    rig.scene = []
    rig.run_for(2.0)
    rig.scene = [Person(1)]                  # a new visit is scanned as usual
    rig.run_for(4.0)
    assert rig.motor.dispensed == [400, 600]


def test_a_failed_button_ribbon_does_not_use_up_the_interval(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.motor.fail_with = "jam"
    rig.motor.presses = 1
    rig.run_for(1.0)
    assert rig.svc.counters.button_failures == 1
    assert rig.svc.state is State.FAULT
    rig.run_for(5.0)                         # the failure message times out
    assert rig.svc.state is State.IDLE
    rig.motor.presses = 1
    rig.run_for(1.0)
    assert rig.motor.dispensed == [400]


def test_button_presses_during_a_fault_are_ignored(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.motor.state_name = "DOOR_OPEN"
    rig.run_for(1.0)
    rig.motor.presses = 2
    rig.run_for(1.0)
    assert rig.motor.dispensed == []
    assert rig.svc.counters.button_ignored == 2


def test_button_gate() -> None:
    gate = ButtonGate(30.0)
    assert gate.allow(0.0)
    assert not gate.allow(29.9)
    assert gate.allow(30.0)
    gate.refund()
    assert gate.allow(30.1)
    assert ButtonGate(0.0).allow(5.0)

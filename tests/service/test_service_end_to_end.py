"""The service against the real store and the real MotorLink talking to firmware_sim over
a pseudo-terminal, all on one virtual clock (vision replaced by synthetic templates)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from service_doubles import Person, Rig

from dispenser.motor_connection import MotorConnection
from dispenser.service import Message, State

# The simulated motor moves on the virtual clock, which steps 0.1 s per frame, and the rig
# lets the firmware see each step before the next (SimulatedController.settle): the motor
# stops within one step (15 mm at 150 mm/s) past the ribbon, as a coarse-timed real motor
# would overshoot; one more step of margin for the step the stop lands in.
# The controller reports what its encoder counted (the service's paper_mm).
OVERSHOOT_MM = 30


def _visit(rig: Rig, pid: int, stay_s: float = 10.0) -> None:
    """Arrive, stay (3 s hold + 4 s ribbon + margin), leave for 3 s."""
    rig.scene = [Person(pid)]
    rig.run_for(stay_s)
    rig.scene = []
    rig.run_for(3.0)


def test_served_denied_within_the_window_served_after_it(
        rig_factory: Callable[..., Rig], sim_motor: MotorConnection) -> None:
    rig = rig_factory(motor=sim_motor)
    sim = sim_motor.simulator
    _visit(rig, 1)
    assert sim.paper_out_mm == pytest.approx(600, abs=OVERSHOOT_MM)
    rig.clock.advance(120.0)
    _visit(rig, 1)
    assert sim.paper_out_mm == pytest.approx(600, abs=OVERSHOOT_MM)
    assert rig.svc.counters.denied == 1
    rig.clock.advance(540.0)
    _visit(rig, 1)
    assert sim.paper_out_mm == pytest.approx(1200, abs=2 * OVERSHOOT_MM)
    assert rig.svc.counters.served == 2
    assert rig.svc.counters.paper_mm == pytest.approx(sim.paper_out_mm, abs=1)


def test_two_people_alternating(rig_factory: Callable[..., Rig],
                                sim_motor: MotorConnection) -> None:
    rig = rig_factory(motor=sim_motor)
    for _ in range(2):
        _visit(rig, 1)
        _visit(rig, 2)
    assert sim_motor.simulator.paper_out_mm == pytest.approx(1200, abs=2 * OVERSHOOT_MM)
    assert (rig.svc.counters.served, rig.svc.counters.denied) == (2, 2)


def test_a_person_who_stays_a_minute_gets_one_ribbon(
        rig_factory: Callable[..., Rig], sim_motor: MotorConnection) -> None:
    rig = rig_factory(motor=sim_motor)
    rig.scene = [Person(1)]
    rig.run_for(60.0)
    assert sim_motor.simulator.paper_out_mm == pytest.approx(600, abs=OVERSHOOT_MM)
    assert rig.svc.counters.served == 1


def test_button_path(rig_factory: Callable[..., Rig], sim_motor: MotorConnection) -> None:
    rig = rig_factory(motor=sim_motor)
    rig.run_for(1.0)
    sim_motor.simulator.press_button()
    assert rig.run_until(lambda: rig.svc.counters.button_served == 1, 10.0)
    sim_motor.simulator.press_button()        # inside the 30 s interval: refused
    assert rig.run_until(lambda: rig.svc.counters.button_refused == 1, 10.0)
    assert sim_motor.simulator.paper_out_mm == pytest.approx(400, abs=OVERSHOOT_MM)
    assert rig.pipeline.embed_calls == 0


def test_jam_rolls_back_and_the_person_is_served_after_the_fix(
        rig_factory: Callable[..., Rig], sim_motor: MotorConnection) -> None:
    rig = rig_factory(motor=sim_motor)
    sim = sim_motor.simulator
    sim.jam_next(after_mm=100.0)
    _visit(rig, 1)
    assert rig.svc.counters.dispense_failures == 1
    assert rig.store.counters().rollbacks == 1
    assert rig.svc.state is State.FAULT    # a jam stays latched...
    sim.set_door(True)                      # ...until staff open the door and clear it
    rig.run_for(1.0)
    sim.set_door(False)
    assert rig.run_until(lambda: rig.svc.state is State.IDLE, 10.0)
    _visit(rig, 1)                          # no template was left: served, not refused
    assert rig.svc.counters.served == 1
    assert rig.svc.counters.denied == 0


def test_out_of_paper_shows_its_message_and_recovers_on_a_new_roll(
        rig_factory: Callable[..., Rig], sim_motor: MotorConnection) -> None:
    rig = rig_factory(motor=sim_motor)
    sim = sim_motor.simulator
    sim.set_roll(0)                         # the heartbeat status brings the news
    assert rig.run_until(lambda: rig.svc.state is State.FAULT, 10.0)
    assert rig.display.current is Message.OUT_OF_PAPER
    _visit(rig, 1)
    assert rig.svc.counters.decisions == 0
    sim.set_roll(50_000)
    assert rig.run_until(lambda: rig.svc.state is State.IDLE, 10.0)
    _visit(rig, 1)
    assert sim.paper_out_mm == pytest.approx(600, abs=OVERSHOOT_MM)


def test_door_open_is_a_fault(rig_factory: Callable[..., Rig], sim_motor: MotorConnection) -> None:
    rig = rig_factory(motor=sim_motor)
    sim_motor.simulator.set_door(True)
    assert rig.run_until(lambda: rig.svc.state is State.FAULT, 10.0)
    assert rig.display.current is Message.UNAVAILABLE
    sim_motor.simulator.set_door(False)
    assert rig.run_until(lambda: rig.svc.state is State.IDLE, 10.0)
    _visit(rig, 1)
    assert sim_motor.simulator.paper_out_mm == pytest.approx(600, abs=OVERSHOOT_MM)

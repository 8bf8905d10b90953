"""Fixtures of the service tests: `rig_factory` wires a DispenserService to the doubles
in service_doubles.py (imported by module name: tests/ is not a package)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from service_doubles import FakeMotor, FakePipeline, FakeTracker, Rig, make_settings

from dispenser.clock import VirtualClock
from dispenser.config import SerialSettings, Settings
from dispenser.motor_connection import MotorConnection, connect_motor
from dispenser.service import DispenserService, RecordingDisplay
from dispenser.service.frames import ScriptedSource
from dispenser.store import TemplateStore
from dispenser.store.rule import ThresholdRule, rule_for


@pytest.fixture
def rig_factory(clock: VirtualClock) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []
    stores: list[TemplateStore] = []

    def make(settings: Settings | None = None, store: Any = None,
             motor: MotorConnection | None = None, rule: ThresholdRule | None = None,
             pipeline: FakePipeline | None = None) -> Rig:
        """A rig with FakeMotor, or with the real link to the simulated controller; its
        store (unless given) uses `rule`, else the settings' rule; its pipeline (unless
        given) a plain FakePipeline."""
        s = settings or make_settings()
        source = ScriptedSource()
        pipeline = pipeline or FakePipeline()
        if store is None:
            store = TemplateStore(s.store, rule=rule or rule_for(s), clock=clock,
                                  start_sweeper=False, zeroise_on_signals=False)
            stores.append(store)
        link = motor.link if motor is not None else FakeMotor()
        display = RecordingDisplay()
        transitions: list[Any] = []
        svc = DispenserService(s, clock=clock, frames=source, store=store,
                               pipeline=pipeline, motor=link, display=display,
                               tracker=FakeTracker(clock), on_transition=transitions.append)
        rig = Rig(clock, source, pipeline, store, link, display, svc, transitions=transitions,
                  simulator=motor.simulator if motor is not None else None)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.svc.close()
    for store in stores:
        store.close()


@pytest.fixture
def sim_motor(clock: VirtualClock) -> Iterator[MotorConnection]:
    """The real MotorLink talking over a pseudo-terminal to firmware_sim, whose motor runs
    on the test's virtual clock at nominal speed (a 600 mm ribbon takes 4 s of it)."""
    with connect_motor(SerialSettings(port="sim"), clock, sim_speed=1.0) as motor:
        yield motor

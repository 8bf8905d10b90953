"""`SimulatedController.settle()`: after it returns, the simulated firmware has run a
whole loop pass at the current (virtual) time, so a driver stepping a virtual clock while
the motor runs never lets a step go by unseen (the motor overshoots by one step at most,
however late the firmware thread is scheduled)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from motor_rig import RawClient

from dispenser.clock import VirtualClock
from dispenser.motor import protocol as P
from dispenser.motor.messages import Capabilities
from firmware_sim import SimulatedController


@pytest.fixture
def virtual_sim() -> Iterator[tuple[VirtualClock, SimulatedController]]:
    clock = VirtualClock(start=50.0)
    sim = SimulatedController(clock=clock, speed=1.0, seed=7)
    sim.start()
    yield clock, sim
    sim.stop()


def test_settle_returns_after_a_pass_that_saw_the_current_time(
        virtual_sim: tuple[VirtualClock, SimulatedController],
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock, sim = virtual_sim
    assert sim.controller is not None
    seen: list[float] = []
    real_tick = sim.controller.tick

    def recording_tick() -> None:
        real_tick()
        seen.append(clock.now())

    monkeypatch.setattr(sim.controller, "tick", recording_tick)
    for _ in range(20):
        clock.advance(0.1)
        assert sim.settle(timeout_s=5.0)
        assert seen[-1] == clock.now()


def test_settle_gives_up_when_the_firmware_does_not_run(
        virtual_sim: tuple[VirtualClock, SimulatedController]) -> None:
    _, sim = virtual_sim
    sim.stop()
    assert sim.settle(timeout_s=0.05) is False


def test_stepping_with_settle_overshoots_by_one_step_at_most(
        virtual_sim: tuple[VirtualClock, SimulatedController]) -> None:
    """The controller's own stop rule, seen through the plant: 300 mm asked, 0.1 s steps
    of 15 mm each; it stops within one step past the target."""
    clock, sim = virtual_sim
    raw = RawClient(sim.device_path)
    try:
        boot = Capabilities.decode(raw.hello(heartbeat_ms=10_000).payload).boot_id
        raw.send(P.DISPENSE, 2, P.u16(300) + P.u16(boot))
        assert raw.reply_to(2).msg_type == P.ACK
        steps = 0
        while sim.motor_on and steps < 100:
            clock.advance(0.1)
            assert sim.settle(timeout_s=5.0)
            steps += 1
        done = raw.expect(lambda f: f.seq == 2 and f.msg_type == P.DONE)
    finally:
        raw.close()
    assert 300 <= P.get_u16(done.payload, 0) <= 300 + 15
    assert 300 <= sim.paper_out_mm <= 300 + 15

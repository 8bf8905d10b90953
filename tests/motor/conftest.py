"""Fixtures for the motor tests: a simulated controller on a real pty, a host link to it
with short timeouts, a raw pyserial client for byte-level round trips, and a fake board
for driving the controller logic directly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from motor_rig import (
    LINK_SETTINGS,
    SLOW_LIMITS,
    SLOW_SPEED,
    SPEED,
    TEST_LIMITS,
    HoldableClock,
    RawClient,
)

from dispenser.clock import BootClock
from dispenser.config import SerialSettings
from dispenser.motor import MotorLink
from firmware_sim import Limits, SimulatedController


@pytest.fixture
def sim_clock() -> HoldableClock:
    return HoldableClock()


def _running(clock: HoldableClock, speed: float,
             limits: dict[str, Any]) -> Iterator[SimulatedController]:
    s = SimulatedController(clock=clock, speed=speed, seed=1234, limits=Limits(**limits))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def sim(sim_clock: HoldableClock) -> Iterator[SimulatedController]:
    yield from _running(sim_clock, SPEED, TEST_LIMITS)


@pytest.fixture
def slow_sim(sim_clock: HoldableClock) -> Iterator[SimulatedController]:
    """A simulated controller whose ribbons take seconds (motor_rig.SLOW_SPEED)."""
    yield from _running(sim_clock, SLOW_SPEED, SLOW_LIMITS)


@pytest.fixture
def serial_settings(sim: SimulatedController) -> SerialSettings:
    return SerialSettings(port=sim.device_path, **LINK_SETTINGS)


@pytest.fixture
def link(serial_settings: SerialSettings) -> Iterator[MotorLink]:
    with MotorLink(serial_settings, BootClock()) as ln:
        yield ln


def _crc16_bitwise(data: bytes) -> int:
    """CRC-16/CCITT-FALSE a bit at a time, straight from the catalogue's definition."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


@pytest.fixture(scope="session")
def crc16_bitwise() -> Callable[[bytes], int]:
    """An independent reference CRC (shares no code with protocol.py's table and portable
    versions), for checking the codec and for the fuzz's oracle."""
    return _crc16_bitwise


@pytest.fixture
def raw(sim: SimulatedController) -> Iterator[RawClient]:
    c = RawClient(sim.device_path)
    yield c
    c.close()

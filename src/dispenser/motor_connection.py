"""Connecting to the motor controller the configuration names: a serial device, or "sim".

`serial.port = "sim"` (the laptop default) means: start the simulated controller
(`firmware_sim`) in this process on a pseudo-terminal and talk to that. The composition
roots (`dispenser run`, `motor`, `simulate`, the test rigs) decide this here and hand
`MotorLink` a device path, so `dispenser.motor` only ever sees a serial device and never
imports its simulator (tests/motor/test_motor_imports.py checks).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from dispenser.clock import Clock
from dispenser.config import SerialSettings
from dispenser.motor import MotorLink

if TYPE_CHECKING:
    from firmware_sim import SimulatedController

SIM_PORT = "sim"


class MotorConnection:
    """An open MotorLink and, when the port was "sim", the simulated controller it talks to
    (None for a real device). `close()` closes the link, then stops the simulator."""

    def __init__(self, link: MotorLink, simulator: SimulatedController | None) -> None:
        self.link = link
        self.simulator = simulator

    def close(self) -> None:
        """Close the link and stop the simulator. Idempotent."""
        self.link.close()
        if self.simulator is not None:
            self.simulator.stop()

    def __enter__(self) -> MotorConnection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def start_simulator(clock: Clock, *, speed: float = 1.0) -> SimulatedController:
    """A simulated controller served on a pty on `clock` (its `device_path` is the port)."""
    from firmware_sim import SimulatedController

    simulator = SimulatedController(clock=clock, speed=speed)
    simulator.start()
    return simulator


def connect_motor(settings: SerialSettings, clock: Clock, *, port: str | None = None,
                  sim_speed: float = 1.0) -> MotorConnection:
    """Open the link to `port` (default `settings.port`), starting the simulated controller
    first when it is "sim" (its motor runs `sim_speed` times nominal on `clock`). Raises
    MotorError("offline") as `MotorLink.open` does, with nothing left running."""
    path = port if port is not None else settings.port
    simulator = start_simulator(clock, speed=sim_speed) if path == SIM_PORT else None
    link = MotorLink(settings, clock,
                     port=simulator.device_path if simulator is not None else path)
    connection = MotorConnection(link, simulator)
    try:
        link.open()
    except BaseException:
        connection.close()
        raise
    return connection

"""The one place the host package reaches into `firmware_sim`.

Port "sim" (the laptop default) runs the simulated controller in this process on a pty,
and `dispenser firmware-sim` serves it on its own. Everything else in `dispenser` talks to
a controller only through a serial device path, so it cannot tell the two apart.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from dispenser.clock import Clock

if TYPE_CHECKING:
    from firmware_sim import SimulatedController
    from firmware_sim.controller import Controller
    from firmware_sim.plant import SimulatedPlant


def start_simulator(clock: Clock, *, speed: float = 1.0, roll_mm: int = 50_000,
                    seed: int | None = None) -> SimulatedController:
    """Start a simulated controller on a pty; its `device_path` is what to open."""
    from firmware_sim import SimulatedController

    sim = SimulatedController(clock=clock, speed=speed, roll_mm=roll_mm, seed=seed)
    sim.start()
    return sim


def firmware_on_clock(clock: Clock, send: Callable[[bytes], None]
                      ) -> tuple[Controller, SimulatedPlant]:
    """The shipped controller firmware (its default limits) driving a simulated roll and
    motor on `clock`, with no pty: host bytes go in through `Controller.receive`, replies
    come out through `send`, and the caller runs `Controller.tick()` (the audit's motor
    checks)."""
    from firmware_sim.controller import Controller
    from firmware_sim.plant import SimulatedPlant

    plant = SimulatedPlant(clock, speed=1.0, roll_mm=50_000)
    controller = Controller(plant, lambda: int(clock.now() * 1000.0), send, boot_id=1)
    return controller, plant


def add_console_arguments(parser: argparse.ArgumentParser) -> None:
    """`dispenser firmware-sim` takes the options of `python -m firmware_sim`."""
    from firmware_sim.console import add_arguments

    add_arguments(parser)


def serve_console(clock: Clock, *, speed: float, roll_mm: int, seed: int | None) -> int:
    """`dispenser firmware-sim`: serve until Ctrl-C, with the operator console on stdin."""
    from firmware_sim.console import serve

    code: int = serve(clock, speed=speed, roll_mm=roll_mm, seed=seed)
    return code

"""`dispenser firmware-sim`: the simulated motor controller alone, on a pseudo-terminal.

Prints the device path (first line of stdout) and serves until Ctrl-C; stdin takes console
commands (door, button, roll, jam, fault). Another terminal can then run
`dispenser motor --port <path> dispense 600`. Same program as `python -m firmware_sim`.
"""

from __future__ import annotations

import argparse

from dispenser.clock import BootClock
from dispenser.config import Settings
from dispenser.motor import simport


def add_arguments(parser: argparse.ArgumentParser) -> None:
    simport.add_console_arguments(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return simport.serve_console(BootClock(), speed=args.speed, roll_mm=args.roll_mm,
                                 seed=args.seed)

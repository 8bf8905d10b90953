"""`dispenser firmware-sim`: the simulated motor controller alone, on a pseudo-terminal.

Prints the device path (first line of stdout) and serves until Ctrl-C; stdin takes console
commands (door, button, roll, jam, fault). Another terminal can then run
`dispenser motor --port <path> dispense 600`. Same program as `python -m firmware_sim`.
"""

from __future__ import annotations

import argparse

from dispenser.clock import BootClock
from dispenser.config import Settings
from firmware_sim import console


def add_arguments(parser: argparse.ArgumentParser) -> None:
    console.add_arguments(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    return console.serve(BootClock(), speed=args.speed, roll_mm=args.roll_mm, seed=args.seed)

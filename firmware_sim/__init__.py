"""The motor controller's firmware logic running on a PC against a simulated motor and
paper roll, served on a pseudo-terminal so the host driver cannot tell it from hardware.

`firmware_sim.controller` is the firmware logic itself (it also runs on the RP2040, see
hw/README.md); `plant` simulates the machine it drives; `server` serves it on a pty.
"""

from firmware_sim.controller import Controller, Limits
from firmware_sim.server import FAULTS, SimulatedController

__all__ = ["FAULTS", "Controller", "Limits", "SimulatedController"]

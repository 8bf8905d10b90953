"""The hardware the controller logic drives, as a type (CPython only, for mypy and readers).

`firmware_sim.controller` runs on the RP2040 too, where there is no `typing`; it names this
protocol only in string annotations under TYPE_CHECKING. Two classes implement it:
`hw/firmware/main.py` (GPIO, PWM, encoder interrupt, watchdog scratch registers) and
`firmware_sim.plant.SimulatedPlant` (a motor, a paper roll, a door and a button in software).
"""

from __future__ import annotations

from typing import Protocol


class Hal(Protocol):
    """What the firmware logic needs from a board. All calls are cheap and never block."""

    features: int  # protocol.CAP_* bits this board has

    def motor(self, on: bool) -> None:
        """Run the feed motor forward at the working duty, or stop it (brake)."""

    def position_mm(self) -> int:
        """Paper fed since power-up in mm (encoder count, or on-time x nominal speed)."""

    def paper_present(self) -> bool:
        """The paper-out sensor sees paper."""

    def door_open(self) -> bool:
        """The service door's reed switch is open."""

    def fault(self) -> bool:
        """The motor driver reports over-current / over-temperature (nFAULT low)."""

    def button_count(self) -> int:
        """Debounced no-scan button presses since power-up (wraps at any width >= 16 bits)."""

    def paper_left_mm(self) -> int:
        """Estimated paper left on the roll in mm, or -1 when the board cannot tell."""

    def retained_load(self) -> list[int] | None:
        """The three 32-bit words saved by retained_store before the last reset, or None
        if they did not survive (power-on reset)."""

    def retained_store(self, words: list[int]) -> None:
        """Save three 32-bit words in memory that survives a watchdog/soft reset."""

"""The physical side of the simulated dispenser: motor, feed roller, paper roll, door, button.

It implements `firmware_sim.hal.Hal`, the interface `hw/firmware/main.py` implements with
GPIO, so the shipped controller logic cannot tell which one it drives. Motion is integrated
lazily from the injected clock: `rate = nominal_mm_s * speed` while the motor runs, so a
600 mm ribbon takes 4 s at speed 1 and 40 ms at speed 100.

Thread safety: the server thread drives it through the controller while a test (or the
`firmware-sim` console) opens the door or presses the button, so every method holds a lock.
"""

from __future__ import annotations

import threading

from dispenser.clock import Clock
from dispenser.motor import protocol as P

NOMINAL_MM_S = 150.0
# Fraction of the nominal speed a slipping feed roller still achieves.
SLIP_FACTOR = 0.05


class SimulatedPlant:
    """A feed motor, a measuring wheel with an encoder riding on the paper (so it counts
    paper that moved, not roller turns: a slipping roller or a stalled sheet shows as slow
    or no progress), a finite roll with a paper-out sensor, the door and the button."""

    features = (P.CAP_ENCODER | P.CAP_PAPER_SENSOR | P.CAP_DOOR_SWITCH | P.CAP_BUTTON
                | P.CAP_CURRENT_SENSE | P.CAP_RETAINED_RECORD)

    def __init__(self, clock: Clock, *, speed: float, roll_mm: int) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = NOMINAL_MM_S * speed
        self._roll = float(roll_mm)
        self._encoder = 0.0
        self._out = 0.0
        self._on = False
        self._t = clock.now()
        self._door = False
        self._buttons = 0
        self._jam_after: float | None = None   # the next run stalls after this many mm
        self._run_fed = 0.0
        self._overcurrent_next = False
        self._fault = False
        self._slip_next = False
        self._slip = False
        self._retained: list[int] | None = None
        self.motor_starts = 0

    # --- physics -----------------------------------------------------------------------

    def _advance(self) -> None:
        now = self._clock.now()
        dt = max(0.0, now - self._t)
        self._t = now
        if not self._on or dt == 0.0:
            return
        step = self._rate * dt * (SLIP_FACTOR if self._slip else 1.0)
        if self._jam_after is not None:
            step = max(0.0, min(step, self._jam_after - self._run_fed))
        self._run_fed += step
        fed = min(step, self._roll)
        self._roll -= fed
        self._out += fed
        self._encoder += fed  # the measuring wheel rides on the paper: it counts paper

    # --- Hal ---------------------------------------------------------------------------

    def motor(self, on: bool) -> None:
        with self._lock:
            self._advance()
            if on and not self._on:
                self.motor_starts += 1
                self._run_fed = 0.0
                self._fault, self._overcurrent_next = self._overcurrent_next, False
                self._slip, self._slip_next = self._slip_next, False
            if not on and self._on:
                self._jam_after = None
                self._fault = False
                self._slip = False
            self._on = on

    def position_mm(self) -> int:
        with self._lock:
            self._advance()
            return int(self._encoder)

    def paper_present(self) -> bool:
        with self._lock:
            self._advance()
            return self._roll > 0.0

    def door_open(self) -> bool:
        with self._lock:
            return self._door

    def fault(self) -> bool:
        with self._lock:
            return self._fault and self._on

    def button_count(self) -> int:
        with self._lock:
            return self._buttons

    def paper_left_mm(self) -> int:
        with self._lock:
            self._advance()
            return int(self._roll)

    def retained_load(self) -> list[int] | None:
        with self._lock:
            return None if self._retained is None else list(self._retained)

    def retained_store(self, words: list[int]) -> None:
        with self._lock:
            self._retained = [w & 0xFFFFFFFF for w in words]

    # --- the world outside the controller ------------------------------------------------

    @property
    def motor_on(self) -> bool:
        with self._lock:
            return self._on

    @property
    def paper_out_mm(self) -> float:
        """Paper that physically left the machine since the simulation started."""
        with self._lock:
            self._advance()
            return self._out

    def set_door(self, is_open: bool) -> None:
        with self._lock:
            self._door = is_open

    def press_button(self) -> None:
        with self._lock:
            self._buttons += 1

    def set_roll(self, mm: int) -> None:
        with self._lock:
            self._advance()
            self._roll = float(max(0, mm))

    def jam_next(self, after_mm: float = 100.0) -> None:
        """The next run stalls (paper caught) after `after_mm` of feed."""
        with self._lock:
            self._jam_after = float(after_mm)

    def overcurrent_next(self) -> None:
        """The driver trips (nFAULT) as soon as the next run starts."""
        with self._lock:
            self._overcurrent_next = True

    def slip_next(self) -> None:
        """The next run feeds at a crawl (worn roller): only the run-time limit stops it."""
        with self._lock:
            self._slip_next = True

    def power_off(self) -> None:
        """Power loss: the motor coasts to a stop and the retained record is lost."""
        with self._lock:
            self._advance()
            self._on = False
            self._retained = None

    def hardware_reset(self) -> None:
        """Watchdog/soft reset: GPIOs float, the driver's pull-downs stop the motor; the
        retained record survives (RP2040 watchdog scratch registers)."""
        with self._lock:
            self._advance()
            self._on = False

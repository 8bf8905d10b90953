"""The one clock every age in the program is measured on.

Invariant 3 (docs/privacy.md): ages count through suspend and ignore wall-clock changes.
On Linux that is `CLOCK_BOOTTIME`; elsewhere we fall back to `time.monotonic()`, which
ignores wall-clock changes but may pause during suspend (documented in docs/privacy.md).
Nothing in the program reads the wall clock (`time.time`) to measure an age.

Three implementations share the `Clock` protocol:

- `BootClock` for the device.
- `VirtualClock` for tests and the simulator: time moves only when `advance()` is called,
  and threads sleeping on it (the store's sweeper, the service loop) wake when it does, so
  a ten-minute retention test runs in milliseconds without `sleep`.
- `ScaledClock` for the laptop simulator's live mode: real time multiplied by a speed
  factor, so every thread (service, sweeper, motor driver, simulated controller) sees the
  same fast-forwarded time without anyone having to drive it.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

# Longest real-time wait in one piece. Waits are chunked because `threading.Event.wait`
# runs on CLOCK_MONOTONIC, which stops during suspend: after a resume we re-read the clock
# within this many seconds instead of oversleeping a deletion deadline.
_MAX_REAL_WAIT_S = 0.25


class Clock(Protocol):
    """Seconds on a clock that never goes backwards."""

    def now(self) -> float:
        """Current time in seconds (arbitrary origin, monotonic)."""
        ...

    def sleep_until(self, deadline: float, cancel: threading.Event) -> bool:
        """Block until `now() >= deadline`; return False early if `cancel` is set."""
        ...


def _boottime_source() -> tuple[str, int | None]:
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    if clock_id is not None:
        try:
            time.clock_gettime(clock_id)
        except OSError:
            clock_id = None
    return ("CLOCK_BOOTTIME", clock_id) if clock_id is not None else ("monotonic", None)


class BootClock:
    """Production clock: `CLOCK_BOOTTIME` where the OS has it, else `time.monotonic()`."""

    def __init__(self) -> None:
        self.source, self._clock_id = _boottime_source()

    def now(self) -> float:
        if self._clock_id is not None:
            return time.clock_gettime(self._clock_id)
        return time.monotonic()

    def sleep_until(self, deadline: float, cancel: threading.Event) -> bool:
        while True:
            remaining = deadline - self.now()
            if remaining <= 0:
                return not cancel.is_set()
            if cancel.wait(min(remaining, _MAX_REAL_WAIT_S)):
                return False


class VirtualClock:
    """A clock moved by hand. Thread-safe; sleepers wake on every `advance()`/`set()`."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._changed = threading.Condition()

    def now(self) -> float:
        with self._changed:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (>= 0) and wake every sleeper; return the new time."""
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back (advance by {seconds})")
        with self._changed:
            self._now += seconds
            self._changed.notify_all()
            return self._now

    def set(self, t: float) -> None:
        """Jump to absolute time `t` (>= now), e.g. to model a long suspend."""
        with self._changed:
            if t < self._now:
                raise ValueError(f"a monotonic clock cannot go back ({t} < {self._now})")
            self._now = float(t)
            self._changed.notify_all()

    def sleep_until(self, deadline: float, cancel: threading.Event) -> bool:
        with self._changed:
            while self._now < deadline:
                if cancel.is_set():
                    return False
                # The real-time timeout only bounds how late we notice `cancel`.
                self._changed.wait(_MAX_REAL_WAIT_S)
            return not cancel.is_set()


class ScaledClock:
    """Simulated time running `speed` times faster than a real clock (`dispenser simulate`).

    `now() = start + (real.now() - real time at construction) * speed`; sleepers wait
    `(deadline - now) / speed` real seconds, in chunks so a cancel is noticed promptly.
    """

    def __init__(self, speed: float, start: float = 0.0, real: Clock | None = None) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"clock speed must be a positive number (got {speed})")
        self.speed = float(speed)
        self._real: Clock = real if real is not None else BootClock()
        self._real_origin = self._real.now()
        self._start = float(start)

    def now(self) -> float:
        return self._start + (self._real.now() - self._real_origin) * self.speed

    def sleep_until(self, deadline: float, cancel: threading.Event) -> bool:
        while True:
            remaining = deadline - self.now()
            if remaining <= 0:
                return not cancel.is_set()
            if cancel.wait(min(remaining / self.speed, _MAX_REAL_WAIT_S)):
                return False

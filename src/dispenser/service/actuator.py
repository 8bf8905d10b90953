"""Runs one blocking `motor.dispense` at a time on a worker thread.

Why a thread: `MotorLink.dispense` blocks until the controller reports DONE or ERROR
(seconds for a ribbon). The service keeps stepping meanwhile (the display, faults, the
camera), and in the simulator the virtual clock must keep moving for the simulated motor
to finish. `svc.step()` therefore never blocks on the motor: it submits a job here and
picks up the outcome on a later step.

Bounded: at most one job in flight; `submit` refuses a second one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from dispenser.logsafe import event
from dispenser.service.ports import MotorLike

_log = logging.getLogger("dispenser.service")


@dataclass(frozen=True)
class Outcome:
    """How a dispense ended. `error` uses the motor's names ("jam", "paper_empty", ...)."""

    ok: bool
    dispensed_mm: int
    error: str | None
    tag: Any                 # what the job was for (a store reservation, or "button")


class MotorWorker:
    """One daemon thread executing dispense jobs one at a time."""

    def __init__(self, motor: MotorLike) -> None:
        self._motor = motor
        self._lock = threading.Condition()
        self._job: tuple[int, Any] | None = None
        self._outcome: Outcome | None = None
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="dispense", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy

    def submit(self, length_mm: int, tag: Any) -> None:
        with self._lock:
            if self._busy:
                raise RuntimeError("a dispense is already running")
            self._job, self._busy, self._outcome = (length_mm, tag), True, None
            self._lock.notify_all()

    def poll(self) -> Outcome | None:
        """The outcome of the finished job, once (None while running or idle)."""
        with self._lock:
            outcome, self._outcome = self._outcome, None
            return outcome

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` real seconds until no job runs (tests, shutdown)."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._busy, timeout)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._job is not None or self._stop)
                if self._job is None:
                    return
                length_mm, tag = self._job
                self._job = None
            outcome = self._run(length_mm, tag)
            with self._lock:
                self._outcome, self._busy = outcome, False
                self._lock.notify_all()

    def _run(self, length_mm: int, tag: Any) -> Outcome:
        try:
            r = self._motor.dispense(length_mm)
            return Outcome(bool(r.ok), int(r.dispensed_mm), r.error, tag)
        except Exception as exc:  # a driver bug must not kill the thread and strand the job
            event(_log, "dispense_exception", logging.ERROR, kind=type(exc).__name__)
            return Outcome(False, 0, "offline", tag)

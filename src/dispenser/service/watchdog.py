"""Notices a stuck pipeline: no frame processed for `limit_s` seconds of clock time.

Two users: the service's own step (a camera that is open but silent is a fault, and the
camera is re-opened) and the `run` loop's watchdog thread, which notices a step that never
returns (a hung driver or model call) and ends the process so systemd restarts it.
"""

from __future__ import annotations


class Watchdog:
    """Remembers the last sign of progress; `stalled` says if it is too long ago."""

    def __init__(self, limit_s: float, now: float) -> None:
        self.limit_s = limit_s
        self._last = now

    def beat(self, now: float) -> None:
        self._last = now

    def silent_for(self, now: float) -> float:
        return max(0.0, now - self._last)

    def stalled(self, now: float) -> bool:
        return self.silent_for(now) > self.limit_s

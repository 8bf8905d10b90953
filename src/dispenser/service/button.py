"""The no-scan button's global rate limit.

Why global and not per person: the button exists so that nobody has to give their face to
get paper, so it must not know who pressed it. One ribbon per `min_interval_s` for
everyone keeps a roll from being emptied by repeated presses, at the cost of sometimes
asking the next person to wait a few seconds.
"""

from __future__ import annotations


class ButtonGate:
    """Allows one no-scan ribbon per `min_interval_s` of clock time."""

    def __init__(self, min_interval_s: float) -> None:
        self._min_interval = min_interval_s
        self._last_at: float | None = None

    def allow(self, now: float) -> bool:
        """True (and the interval restarts) if a ribbon may go out now."""
        if self._last_at is not None and now - self._last_at < self._min_interval:
            return False
        self._last_at = now
        return True

    def refund(self) -> None:
        """The ribbon did not go out (jam, empty, offline): the next press is allowed."""
        self._last_at = None

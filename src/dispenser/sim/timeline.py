"""What the simulator shows a person at a terminal: the timeline rows and a progress bar.

A row is (time, who, event, decision, store occupancy, paper used). Rows carry names,
counts and lengths only: never a template, frame or similarity vector.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO

HEADER = f"{'time':>6}  {'who':<10} {'event':<58} {'decision':<9} {'store':>5} {'paper':>8}"


@dataclass(frozen=True)
class Row:
    """One line of the timeline."""

    t: float            # simulated seconds since the start
    who: str
    event: str
    decision: str       # "DISPENSE", "DENY", "" ...
    occupancy: int      # templates in the store after the event
    paper_mm: int       # paper given out so far

    def as_dict(self) -> dict[str, object]:
        return {"t": round(self.t, 1), "who": self.who, "event": self.event,
                "decision": self.decision, "occupancy": self.occupancy,
                "paper_mm": self.paper_mm}


def clock_text(t: float) -> str:
    """Seconds as mm:ss (or h:mm:ss past an hour)."""
    whole = int(t)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def format_row(row: Row) -> str:
    return (f"{clock_text(row.t):>6}  {row.who:<10} {row.event:<58} {row.decision:<9} "
            f"{row.occupancy:>5} {row.paper_mm / 1000:>6.2f} m")


class ProgressBar:
    """A one-line bar on a terminal (redrawn in place); silent when not a terminal."""

    def __init__(self, total: float, stream: TextIO | None = None, width: int = 30,
                 label: str = "") -> None:
        self._total = max(total, 1e-9)
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._label = label
        self._shown = -1
        self.enabled = self._stream.isatty()

    def update(self, done: float, text: str = "") -> None:
        if not self.enabled:
            return
        fraction = min(max(done / self._total, 0.0), 1.0)
        cells = int(fraction * self._width)
        key = cells * 1000 + int(fraction * 100)
        if key == self._shown:
            return
        self._shown = key
        bar = "#" * cells + "." * (self._width - cells)
        self._stream.write(f"\r{self._label}[{bar}] {100 * fraction:3.0f}% {text}\x1b[K")
        self._stream.flush()

    def clear(self) -> None:
        """Remove the bar so ordinary output continues on a clean line."""
        if self.enabled and self._shown >= 0:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = -1

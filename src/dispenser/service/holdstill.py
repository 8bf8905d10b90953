"""Hold still: which face is served, how long it has been steady, and the one template
built from that steady period.

Why a mean of several templates: a single frame can be slightly blurred, badly lit or
turned; averaging the best K embeddings taken across the hold-still period (best by the
quality gate's `frame_rank`: the most frontal, sharpest frames; then re-normalising)
gives a steadier probe, so a repeat visitor is recognised more reliably and a stranger is
less likely to be confused with someone else.

Privacy: all templates live in one block allocated once (`K` slots, one scratch, one probe),
locked against swap where the OS allows (`dispenser.privacy.memory`), and overwritten with
zeros when the hold is abandoned and right after the decision (`clear`); `release` also
unlocks it. Nothing here allocates a template-sized array per frame.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from dispenser.embedders import TEMPLATE_DIM
from dispenser.privacy.memory import locked_buffer, unlock_pages, zeroise

BEST_K = 3


def box_area(box: tuple[float, float, float, float]) -> float:
    x0, y0, x1, y1 = box
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def choose_target(tracks: Iterable[Any], current_id: int | None,
                  excluded: set[int]) -> Any | None:
    """The track to serve: the current target while it is still in view and steady, else
    the largest (closest) *steady* face in view that passes the quality gate and was not
    decided in this visit (the largest moving one if none is steady). Sticking to the
    current target keeps a second person stepping in behind, or someone walking past close
    to the camera, from resetting someone's hold-still; it stays the target through a blink
    or a glance (a frame failing the gate while the tracker still calls it steady)."""
    live = [t for t in tracks if not t.lost and t.id not in excluded]
    for t in live:
        if t.id == current_id and (t.face.quality.ok or t.steady_s > 0.0):
            return t
    candidates = [t for t in live if t.face.quality.ok]
    if not candidates:
        return None
    return max(candidates, key=lambda t: (t.steady_s > 0.0, box_area(t.face.box)))


class HoldStill:
    """Progress of one target's steady period and the templates collected during it."""

    def __init__(self, hold_still_s: float, dim: int = TEMPLATE_DIM, k: int = BEST_K) -> None:
        self.hold_still_s = hold_still_s
        self._block = locked_buffer((k + 2, dim), np.float32)
        self._slots: np.ndarray = self._block[:k]
        self.scratch: np.ndarray = self._block[k]  # pipeline.embed writes here
        self._probe: np.ndarray = self._block[k + 1]
        self._ranks = np.full(k, -np.inf, np.float64)
        self._used = np.zeros(k, bool)
        self._min_gap = hold_still_s / (2 * k)     # at most ~2K embeddings per hold
        self.track_id: int | None = None
        self._since: float | None = None
        self._last_embed_at: float | None = None
        self.embeds = 0

    @property
    def collected(self) -> int:
        return int(self._used.sum())

    def start(self, track_id: int, now: float) -> None:
        """Begin a hold for `track_id` (any previous hold is zeroised)."""
        self.clear()
        self.track_id, self._since = track_id, now

    def progress(self, now: float, steady_s: float) -> float:
        """0..1: the shorter of the time since the hold started (quality passing) and the
        tracker's steady time, over `hold_still_s`."""
        if self._since is None:
            return 0.0
        held = min(now - self._since, steady_s)
        return max(0.0, min(1.0, held / self.hold_still_s))

    def wants_embedding(self, rank: float, now: float) -> bool:
        """True if a face of this frame rank (`QualityReport.frame_rank`), now, could
        improve the kept set."""
        if self._last_embed_at is not None and now - self._last_embed_at < self._min_gap:
            return False
        return not self._used.all() or rank > float(self._ranks.min())

    def keep(self, rank: float, now: float) -> None:
        """Take the template the pipeline just wrote into `scratch` (then zeroise it)."""
        self._last_embed_at = now
        self.embeds += 1
        free = np.flatnonzero(~self._used)
        slot = int(free[0]) if free.size else int(np.argmin(self._ranks))
        if free.size or rank > self._ranks[slot]:
            self._slots[slot] = self.scratch
            self._ranks[slot] = rank
            self._used[slot] = True
        self.scratch.fill(0.0)

    def complete(self, now: float, steady_s: float) -> bool:
        return self.collected > 0 and self.progress(now, steady_s) >= 1.0

    def build_probe(self) -> np.ndarray:
        """Mean of the kept templates, re-normalised, in the preallocated probe buffer.
        The slots are zeroised here; the caller zeroises the probe (`clear`) after the
        decision."""
        self._probe.fill(0.0)
        for slot in np.flatnonzero(self._used):   # sum in place: no template-sized copies
            self._probe += self._slots[slot]
        norm = float(np.linalg.norm(self._probe))
        if norm > 0.0:
            self._probe /= norm
        self._wipe_slots()
        return self._probe

    def clear(self) -> None:
        """Forget the target and overwrite every template buffer with zeros."""
        self._wipe_slots()
        self._probe.fill(0.0)
        self.scratch.fill(0.0)
        self.track_id, self._since, self._last_embed_at = None, None, None

    def _wipe_slots(self) -> None:
        self._slots.fill(0.0)
        self._ranks.fill(-np.inf)
        self._used.fill(False)

    def buffers_zero(self) -> bool:
        """True if no template data is held (tests and the audit check this)."""
        return not self._block.any()

    def release(self) -> None:
        """Zeroise and unlock the block (the service is shutting down)."""
        self.clear()
        zeroise(self._block)
        unlock_pages(self._block)

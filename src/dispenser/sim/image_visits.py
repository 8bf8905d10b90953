"""`dispenser simulate --images`: each still image is one visit to the machine.

A visitor stands in front of the camera until the machine has decided (and, when it served
them, until the ribbon is out and "Here you go" has been shown), then walks away. The
image-directory source of `dispenser run` shows each image for a fixed 5 s, shorter than
one serve (hold-still 3 s, the ribbon about 4 s, the message 4 s), so in the simulator the
face after a served one went by unscanned. Here an image stays in front of the camera until
its visit is over, or until `patience_s` have passed without a decision (no face, or none
held still past the quality gate: the image is reported as skipped, as is a file that
cannot be decoded; one whose header is not an image's is left out with a warning, as
`dispenser run --source DIR` does). A blank frame for `gap_s` then lets the face leave, so
that the next image, even of the same person, is a new visit.

`--images` also takes a single image file: one visit.

The current image lives in one swap-locked buffer, overwritten with zeros when its visit
ends and on close; `read()` hands out that buffer (no copy per frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dispenser.clock import Clock
from dispenser.errors import DispenserError
from dispenser.privacy.memory import lock_pages, unlock_pages, zeroise
from dispenser.service.frames import FrameSourceError, list_images
from dispenser.vision.images import load_image_bgr
from dispenser.vision.tracker import LOST_AFTER_S

GAP_S = LOST_AFTER_S + 0.5   # blank frames between two visits: the tracker drops the face
FPS = 10.0                   # frames delivered per second of clock time
BLANK_GREY = 90              # the empty scene between two visitors


@dataclass(frozen=True)
class Skipped:
    """An image that got no decision, and why (for the summary and the JSON)."""

    image: str
    reason: str


class ImageVisits:
    """A `FrameSource` for the simulator: one visit per image, paced by `pace()`."""

    def __init__(self, spec: Path, clock: Clock, *, patience_s: float,
                 gap_s: float = GAP_S, fps: float = FPS) -> None:
        self._spec = spec
        self._clock = clock
        self._patience_s = patience_s
        self._gap_s = gap_s
        self._frame_dt = 1.0 / fps
        self._paths: list[Path] = []
        self._next = 0                          # index of the next image to load
        self._image: np.ndarray | None = None   # the current visitor, swap-locked
        self._blank: np.ndarray | None = None   # the scene between visitors (no face)
        self._visit_started: float | None = None
        self._decisions_before = 0
        self._gap_until: float | None = None
        self._last_frame_t: float | None = None
        self._finished = False
        self._notes: list[tuple[str, str]] = []
        self.label = "-"                        # the timeline's "who": "image 2/5"
        self.skipped: list[Skipped] = []

    @property
    def name(self) -> str:
        return f"images {self._spec}"

    @property
    def finished(self) -> bool:
        return self._finished

    def open(self) -> None:
        """List the images and load the first readable one; FrameSourceError if none is.
        Opening again (the service opens its source on its first step) changes nothing."""
        if self._paths:
            return
        if self._spec.is_dir():
            paths = list_images(self._spec)   # a file with a bad header: one warning
        elif self._spec.is_file():
            paths = [self._spec]
        else:
            raise FrameSourceError(f"images: {self._spec} does not exist")
        self._paths = paths
        if not self._load_next():
            first = self.skipped[0].reason
            raise FrameSourceError(first if len(paths) == 1 else
                                   f"images: none of the {len(paths)} images in "
                                   f"{self._spec} can be read (first: {first})")

    def read(self) -> np.ndarray | None:
        frame = self._image if self._gap_until is None else self._blank
        if self._finished or frame is None:
            return None
        now = self._clock.now()
        if self._last_frame_t is not None and now - self._last_frame_t < self._frame_dt:
            return None
        self._last_frame_t = now
        return frame

    def pace(self, now: float, *, decisions: int, busy: bool) -> None:
        """Called after every service step with the service's decision count and whether
        it is busy with a visitor (holding still, deciding, dispensing, showing the result)."""
        if self._finished:
            return
        if self._gap_until is not None:
            if now >= self._gap_until:
                self._gap_until = None
                if not self._load_next():
                    self._finished = True
            return
        if self._visit_started is None:
            self._visit_started, self._decisions_before = now, decisions
            return
        if busy:
            return
        if decisions > self._decisions_before:
            self._end_visit(now)
        elif now - self._visit_started >= self._patience_s:
            reason = (f"no decision in {self._patience_s:g} s (no face held still and "
                      "passed the quality gate)")
            self.skipped.append(Skipped(self._paths[self._next - 1].name, reason))
            self._notes.append((self.label, f"no decision in {self._patience_s:g} s: skipped"))
            self._end_visit(now)

    def take_notes(self) -> list[tuple[str, str]]:
        """(who, text) lines for the timeline since the last call."""
        notes, self._notes = self._notes, []
        return notes

    def close(self) -> None:
        self._release()
        self._blank = None
        self._finished = True

    def _end_visit(self, now: float) -> None:
        """The visitor walks away: blank frames for `gap_s`, then the next image."""
        if self._image is not None:
            self._blank = np.full_like(self._image, BLANK_GREY)
        self._release()
        self._gap_until = now + self._gap_s
        self._visit_started = None

    def _load_next(self) -> bool:
        """Load the next readable image into the current slot; False when none is left."""
        while self._next < len(self._paths):
            path = self._paths[self._next]
            self._next += 1
            label = f"image {self._next}/{len(self._paths)}"
            try:
                image = load_image_bgr(path)
            except DispenserError as exc:
                self.skipped.append(Skipped(path.name, str(exc)))
                self._notes.append((label, f"{path.name} cannot be read: skipped"))
                continue
            lock_pages(image)
            self._image, self.label = image, label
            self._notes.append((label, f"{path.name} in front of the camera"))
            return True
        return False

    def _release(self) -> None:
        if self._image is not None:
            zeroise(self._image)
            unlock_pages(self._image)
            self._image = None

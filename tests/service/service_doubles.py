"""Test doubles for the service's collaborators, following the protocols in
dispenser.service.ports.

The vision stage is not under test here: a scene is drawn as flat grey rectangles (one
grey level per person), `FakePipeline` finds them again and writes each person's fixed
synthetic identity template (plus a little noise per frame), and `FakeTracker` follows
rectangles across frames. The motor has a small in-memory double with the contract's
semantics (test_service_end_to_end.py uses firmware_sim over a pseudo-terminal instead). The
store is the real `TemplateStore` (its sweeper thread off: the virtual clock only moves
when a test says so, and the store expires entries on every call).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dispenser.clock import VirtualClock
from dispenser.config import (
    DispenseSettings,
    DisplaySettings,
    Settings,
    StoreSettings,
    VisionSettings,
)
from dispenser.service import DispenserService, RecordingDisplay
from dispenser.service.frames import ScriptedSource

FRAME_H, FRAME_W = 120, 160
BACKGROUND = 20
DIM = 128


# ----------------------------------------------------------------------------- scenes

@dataclass
class Person:
    """A face-sized rectangle; `pid` (1..9) is both its grey level key and its identity."""

    pid: int
    x: float = 40.0
    y: float = 20.0
    size: float = 50.0

    @property
    def grey(self) -> int:
        return 40 + 20 * self.pid


def draw(people: list[Person]) -> np.ndarray:
    frame = np.full((FRAME_H, FRAME_W, 3), BACKGROUND, np.uint8)
    for p in people:
        x0, y0 = int(p.x), int(p.y)
        frame[y0:y0 + int(p.size), x0:x0 + int(p.size)] = p.grey
    return frame


# ------------------------------------------------------------------------------ vision

@dataclass(frozen=True)
class FakeQuality:
    ok: bool
    reason: str
    frame_rank: float = 1.0


@dataclass(frozen=True, eq=False)
class FakeFace:
    box: tuple[float, float, float, float]
    score: float
    quality: FakeQuality
    pid: int


def identity(pid: int) -> np.ndarray:
    """Person `pid`'s fixed unit template (independent random directions: cos ~ 0)."""
    v = np.random.default_rng(1000 + pid).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def lookalike(pid: int, of: int, cosine: float) -> np.ndarray:
    """Person `pid`'s template made to score `cosine` against person `of`'s: a stranger
    who looks like someone (the part of `pid`'s own direction orthogonal to `of`)."""
    base, own = identity(of).astype(np.float64), identity(pid).astype(np.float64)
    own -= (own @ base) * base
    own /= np.linalg.norm(own)
    return (cosine * base + np.sqrt(1.0 - cosine**2) * own).astype(np.float32)


class FakePipeline:
    """Finds the grey rectangles of `draw` and embeds them as their person's template.
    `lookalikes[pid] = (of, cosine)` gives person `pid` a template that close to `of`'s."""

    def __init__(self, min_size: int = 20, noise: float = 0.01) -> None:
        self.min_size = min_size
        self.noise = noise
        self.lookalikes: dict[int, tuple[int, float]] = {}
        self.detect_calls = 0
        self.embed_calls = 0
        self.scrubs_after_embed: list[int] = []  # embed_calls at each scrub
        self._rng = np.random.default_rng(7)
        self.fail_next_detect = False

    def detect(self, frame: np.ndarray) -> list[FakeFace]:
        self.detect_calls += 1
        if self.fail_next_detect:
            self.fail_next_detect = False
            raise ValueError("corrupt frame")
        grey = frame[:, :, 0]
        faces = []
        for pid in range(1, 10):
            ys, xs = np.nonzero(grey == 40 + 20 * pid)
            if ys.size == 0:
                continue
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            big = box[3] - box[1] >= self.min_size
            faces.append(FakeFace(box, 0.99, FakeQuality(big, "ok" if big else "too_small"),
                                  pid))
        return faces

    def embed(self, frame: np.ndarray, face: FakeFace, out: np.ndarray) -> None:
        self.embed_calls += 1
        like = self.lookalikes.get(face.pid)
        base = identity(face.pid) if like is None else lookalike(face.pid, *like)
        v = base + self.noise * self._rng.standard_normal(DIM).astype(np.float32)
        out[:] = v / np.linalg.norm(v)

    def scrub(self) -> None:
        self.scrubs_after_embed.append(self.embed_calls)


@dataclass
class FakeTrack:
    id: int
    face: FakeFace
    steady_since: float
    lost: bool = False
    now: float = 0.0
    missed: int = 0

    @property
    def steady_s(self) -> float:
        return self.now - self.steady_since


class FakeTracker:
    """Follows each grey level; a person who vanishes for one update gets a new id when
    they come back; moving more than 3 px restarts the steady time."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._ids = itertools.count(1)
        self._tracks: dict[int, FakeTrack] = {}

    def update(self, faces: list[FakeFace]) -> list[FakeTrack]:
        now = self._clock.now()
        seen = {f.pid: f for f in faces}
        out = []
        for pid, track in list(self._tracks.items()):
            if pid not in seen:
                del self._tracks[pid]
                track.lost = True
                out.append(track)
        for pid, face in seen.items():
            track = self._tracks.get(pid)
            if track is None:
                track = FakeTrack(next(self._ids), face, now)
                self._tracks[pid] = track
            elif max(abs(a - b) for a, b in zip(face.box, track.face.box, strict=True)) > 3:
                track.steady_since = now
            track.face, track.now = face, now
            out.append(track)
        return out


# ------------------------------------------------------------------------------- motor

class FakeState:
    def __init__(self, name: str) -> None:
        self.name = name


@dataclass
class FakeResult:
    ok: bool
    dispensed_mm: int
    error: str | None


@dataclass
class FakeMotor:
    """Dispenses instantly; `fail_with` makes the next dispense fail with that error."""

    state_name: str = "READY"
    presses: int = 0
    fail_with: str | None = None
    dispensed: list[int] = field(default_factory=list)

    def dispense(self, length_mm: int) -> FakeResult:
        if self.fail_with is not None:
            error, self.fail_with = self.fail_with, None
            return FakeResult(False, 0, error)
        self.dispensed.append(length_mm)
        return FakeResult(True, length_mm, None)

    def state(self) -> FakeState:
        return FakeState(self.state_name)

    def button_presses(self) -> int:
        n, self.presses = self.presses, 0
        return n


# ---------------------------------------------------------------------------- the rig

def make_settings(**vision: Any) -> Settings:
    return Settings(
        store=StoreSettings(deny_window_s=540.0, retention_s=600.0),
        vision=VisionSettings(**{"hold_still_s": 3.0, "idle_detect_hz": 2.0, **vision}),
        dispense=DispenseSettings(ribbon_mm=600, button_ribbon_mm=400,
                                  button_min_interval_s=30.0),
        display=DisplaySettings(message_s=4.0),
    )


@dataclass
class Rig:
    """A service wired to doubles, plus a scene the test edits between ticks."""

    clock: VirtualClock
    source: ScriptedSource
    pipeline: FakePipeline
    store: Any
    motor: Any
    display: RecordingDisplay
    svc: DispenserService
    scene: list[Person] = field(default_factory=list)
    frame_dt: float = 0.1
    transitions: list[Any] = field(default_factory=list)

    # The simulated controller (firmware_sim) the motor link talks to, on the virtual clock:
    # its motor moves only as the clock does, so a tick must not wait for the dispense;
    # while the motor runs it waits instead until the firmware has seen the current time
    # (one step of feed past the target at most). None with FakeMotor.
    simulator: Any = None

    def tick(self) -> None:
        """One frame of the current scene, one step, then time moves by `frame_dt`."""
        self.source.push(draw(self.scene))
        self.svc.step()
        if self.simulator is not None:
            time.sleep(0.001)  # the pty threads' moment
            if self.svc.motor_busy:
                self.simulator.settle()
        elif self.svc.motor_busy:
            assert self.svc.wait_motor(5.0)
        self.clock.advance(self.frame_dt)

    def run_for(self, seconds: float) -> None:
        for _ in range(round(seconds / self.frame_dt)):
            self.tick()

    def run_until(self, done: Callable[[], bool], max_s: float) -> bool:
        """Tick until `done()` (True) or `max_s` of clock time passed (False)."""
        for _ in range(round(max_s / self.frame_dt)):
            if done():
                return True
            self.tick()
        return done()

    def states(self) -> list[str]:
        return [t.target.value for t in self.transitions]



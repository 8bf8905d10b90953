"""How long people in recorded videos take to get a decision: the hold-still measured on
real footage, through the real detector, quality gate, tracker and service.

    python bench/hold_still_videos.py DIR [DIR ...] [--config FILE] [--limit-s 4]

Every video file under the directories (recursively) is played from its first frame to its
last, every frame, on a virtual clock that advances by the file's frame period, into a
`DispenserService` with the real `FacePipeline` and `FaceTracker`; the store answers every
probe with a refusal (nothing is stored, nothing dispensed). Reported: how many clips were
decided, how many within `--limit-s`, the median, 90th percentile and longest time from the
first frame to the first decision, and what the frames were like: the share without a face
and failing each quality check, how far the face box moves from frame to frame, and how
far heads are turned (yaw ratio, `dispenser.vision.quality`); and, for the clips never
decided, a count per the verdict most of their frames fail the gate with.

Privacy: aggregate numbers only. No frame, crop, landmark, template or per-clip figure is
printed or written anywhere (progress on stderr is a count), and each frame is overwritten
with zeros once its step is done. Use it on footage you may not redistribute without
leaving anything of it behind.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dispenser.clock import VirtualClock
from dispenser.config import Settings, load_settings
from dispenser.service import DispenserService, RecordingDisplay
from dispenser.service.frames import ScriptedSource
from dispenser.vision import FacePipeline, FaceTracker
from dispenser.vision.face import Face

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


@dataclass(frozen=True)
class _Refusal:
    dispense: bool = False
    short: bool = False
    reservation: None = None


class _RefusingStore:
    """Answers every probe with a refusal and remembers when the first one came."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self.decided_at: float | None = None

    def decide(self, probe: np.ndarray) -> _Refusal:
        if self.decided_at is None:
            self.decided_at = self._clock.now()
        return _Refusal()

    def commit(self, reservation: Any) -> bool:
        return False

    def rollback(self, reservation: Any) -> bool:
        return False

    def counters(self) -> None:
        return None


class _IdleMotor:
    """A controller that is ready and never asked to dispense (every probe is refused)."""

    class _Ready:
        name = "READY"

    def state(self) -> _Ready:
        return self._Ready()

    def button_presses(self) -> int:
        return 0

    def dispense(self, length_mm: int) -> Any:
        raise AssertionError("the refusing store never lets the service dispense")


class _Tally:
    """What the frames were like, over all clips: the quality gate's verdict on the largest
    face, how far its box centre moved from the previous frame's (in face widths), and
    its yaw ratio. Plain numbers, pooled; nothing per clip."""

    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()
        self.clip_reasons: Counter[str] = Counter()  # the current clip's, reset per clip
        self.jitter: list[float] = []
        self.yaw: list[float] = []

    def add(self, faces: list[Face], previous: Face | None) -> None:
        reason = faces[0].quality.reason if faces else "no face"
        self.reasons[reason] += 1
        self.clip_reasons[reason] += 1
        if not faces:
            return
        face = faces[0]
        self.yaw.append(abs(face.quality.yaw_ratio))
        if previous is not None and previous.width > 0:
            (x0, y0), (x1, y1) = previous.centre, face.centre
            self.jitter.append(float(np.hypot(x1 - x0, y1 - y0)) / previous.width)


class _TallyingPipeline:
    """The real pipeline, feeding the tally on every detection."""

    def __init__(self, inner: FacePipeline, tally: _Tally) -> None:
        self._inner = inner
        self._tally = tally
        self._previous: Face | None = None

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        faces = self._inner.detect(frame_bgr)
        self._tally.add(faces, self._previous)
        self._previous = faces[0] if faces else None
        return faces

    def embed(self, frame_bgr: np.ndarray, face: Face, out: np.ndarray) -> None:
        self._inner.embed(frame_bgr, face, out)

    def scrub(self) -> None:
        self._inner.scrub()


def videos(dirs: list[Path]) -> list[Path]:
    found = sorted(p for d in dirs for p in d.rglob("*")
                   if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not found:
        raise SystemExit(f"hold_still_videos: no video files under {', '.join(map(str, dirs))}")
    return found


def _frames(path: Path) -> tuple[float, Iterator[np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"hold_still_videos: cannot decode {path}")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    def read() -> Iterator[np.ndarray]:
        frame: np.ndarray | None = None
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    return
                yield frame
                frame.fill(0)       # nothing of a frame outlives its step
        finally:
            if frame is not None:
                frame.fill(0)
            cap.release()

    return (fps if 1.0 <= fps <= 240.0 else 25.0), read()


def time_to_decision(path: Path, pipeline: FacePipeline, settings: Settings,
                     tally: _Tally) -> tuple[float | None, float]:
    """(seconds from the first frame to the first decision or None, clip length in s).
    The clip plays to its end either way, so the tally covers every frame."""
    clock = VirtualClock(1000.0)
    t0 = clock.now()
    store = _RefusingStore(clock)
    source = ScriptedSource()
    service = DispenserService(settings, clock=clock, frames=source, store=store,
                               pipeline=_TallyingPipeline(pipeline, tally),
                               motor=_IdleMotor(), display=RecordingDisplay(),
                               tracker=FaceTracker(clock))
    fps, frames = _frames(path)
    count = 0
    try:
        for frame in frames:
            if count:
                clock.advance(1.0 / fps)
            count += 1
            source.push(frame)
            service.step()
    finally:
        service.close()
    return (None if store.decided_at is None else store.decided_at - t0), count / fps


def _main_failure(reasons: Counter[str]) -> str:
    """The commonest verdict of a clip's frames other than a pass ("ok" if none failed)."""
    failures = Counter({why: n for why, n in reasons.items() if why != "ok"})
    return failures.most_common(1)[0][0] if failures else "ok"


def _percentiles(values: list[float], *qs: float) -> str:
    if not values:
        return "n/a"
    return ", ".join(f"{q:g}th {float(np.percentile(values, q)):.3f}" for q in qs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="directories of video files")
    parser.add_argument("--config", type=Path, default=None, help="dispenser TOML config")
    parser.add_argument("--limit-s", type=float, default=4.0,
                        help="report how many clips were decided within this (default 4)")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    clips = videos(args.dirs)
    tally = _Tally()
    times: list[float] = []
    undecided_short = undecided = 0
    undecided_why: Counter[str] = Counter()
    with FacePipeline(settings.vision, threads=settings.vision.threads) as pipeline:
        for i, path in enumerate(clips, 1):
            print(f"clip {i}/{len(clips)}", file=sys.stderr, flush=True)
            tally.clip_reasons.clear()
            took, length = time_to_decision(path, pipeline, settings, tally)
            if took is not None:
                times.append(took)
            else:
                undecided += 1
                undecided_short += length < args.limit_s
                undecided_why[_main_failure(tally.clip_reasons)] += 1
    within = sum(t <= args.limit_s for t in times)
    print(f"clips: {len(clips)} (hold_still_s = {settings.vision.hold_still_s:g})")
    print(f"decided: {len(times)}, within {args.limit_s:g} s: {within}; undecided: "
          f"{undecided} ({undecided_short} of them shorter than {args.limit_s:g} s)")
    if undecided:
        print("undecided clips by the reason most of their frames fail the gate with: "
              + ", ".join(f"{why} {n}" for why, n in undecided_why.most_common()))
    if times:
        print(f"time to decision: median {statistics.median(times):.2f} s, "
              f"{_percentiles(times, 90)} s, longest {max(times):.2f} s")
    total = sum(tally.reasons.values())
    print(f"frames analysed: {total}; the largest face's quality verdict:")
    for reason, n in tally.reasons.most_common():
        print(f"  {reason:14s} {100.0 * n / total:5.1f} %")
    print("box centre moved from the previous frame, in face widths: "
          f"{_percentiles(tally.jitter, 50, 95, 99)}")
    print(f"|yaw ratio|: {_percentiles(tally.yaw, 50, 90, 99)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

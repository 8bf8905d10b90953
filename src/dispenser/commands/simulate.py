"""`dispenser simulate`: the whole machine on this computer, or a crowd study.

    dispenser simulate                      the built-in story (no camera, no hardware)
    dispenser simulate --video FILE         real frames through the real vision pipeline
    dispenser simulate --images DIR         ... from a directory of still images
    dispenser simulate --camera 0           ... from a webcam, with a preview window
    dispenser simulate --scenario station-peak [--report DIR]
                                            a crowd study: settings sweep, plots, HTML

docs/simulator.md explains each mode and which stages are real or simulated.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispenser.config import Settings
from dispenser.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, DispenserError
from dispenser.sim.live import MAX_SPEED

if TYPE_CHECKING:
    from dispenser.clock import Clock
    from dispenser.service.frames import FrameSource
    from dispenser.sim.live import LiveResult
    from dispenser.sim.preview import Preview
    from dispenser.sim.similarity import SimilarityTable
    from dispenser.sim.timeline import ProgressBar, Row

    Emit = Callable[[Row], None]
    Progress = Callable[[float, float], None]

DEFAULT_SPEED = 100.0
# --images: an image with no decision this long after its hold-still time is skipped
VISIT_SLACK_S = 5.0
DEFAULT_SEED = 1
LIVE_FORMAT = "dispenser-live-run/1"


def _speed(text: str) -> float:
    if text.lower() in ("max", "inf"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed must be a number or 'max', not {text!r}"
                                         ) from None
    if not (math.isfinite(value) and 0.1 <= value <= 100_000):
        raise argparse.ArgumentTypeError(f"speed {text} is out of range (0.1 to 100000, "
                                         "or 'max')")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a whole number, not {text!r}"
                                         ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be 0 or more, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--scenario", metavar="NAME|FILE",
                        help="crowd study: a preset (station-peak, station-offpeak, mall, "
                             "scenic-spot) or a scenario TOML file (docs/simulator.md)")
    source.add_argument("--camera", metavar="N", help="a webcam index or /dev/video* device")
    source.add_argument("--video", metavar="FILE", type=Path, help="a video file")
    source.add_argument("--images", metavar="DIR|IMAGE", type=Path,
                        help="a folder of still images (or one image), each one visitor: "
                             "shown until the machine has decided, or skipped (and said so) "
                             f"after hold-still + {VISIT_SLACK_S:g} s without a decision")
    parser.add_argument("--speed", type=_speed, default=DEFAULT_SPEED, metavar="X",
                        help=f"simulated seconds per real second (default {DEFAULT_SPEED:g}; "
                             "'max' = 1000, as fast as the simulated controller can follow; "
                             "a camera always runs in real time)")
    parser.add_argument("--seed", type=_seed, default=DEFAULT_SEED,
                        help=f"random seed of the synthetic people (default {DEFAULT_SEED}); "
                             "the same seed gives the same crowd report byte for byte")
    parser.add_argument("--similarity", metavar="FILE", type=Path, default=None,
                        help="fit the synthetic people to your own measured similarity "
                             "quantiles: a file written by dispenser calibrate --faces DIR "
                             "--write-similarity FILE (docs/simulator.md; default: the "
                             "worst group of the embedder's model card)")
    parser.add_argument("--similarity-group", metavar="GROUP", default=None,
                        help="which [similarity.GROUP] table to use (default: "
                             "[calibration] worst_group)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of the timeline / summary")
    parser.add_argument("--report", metavar="DIR", type=Path, default=None,
                        help="crowd study: where report.json, report.html and the PNG plots "
                             "go (default: ./sim-report-<scenario>)")
    parser.add_argument("--no-report", action="store_true",
                        help="crowd study: print the summary only, write no files")
    parser.add_argument("--preview", action=argparse.BooleanOptionalAction, default=None,
                        help="show the camera frame with face box, hold-still progress and "
                             "message (default: on with --camera; off-screen without a display)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop a --camera run after S seconds (default: until Ctrl-C)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.log_level is None:
        # The timeline replaces the service's log lines; --log-level INFO shows both.
        logging.getLogger().setLevel(logging.WARNING)
    if args.scenario is not None:
        return _crowd(args, settings)
    return _live(args, settings)


def _similarity(args: argparse.Namespace, settings: Settings) -> SimilarityTable:
    """The table the synthetic people copy: --similarity FILE, else the configured
    embedder card's worst group, else the labelled provisional fallback."""
    from dispenser.embedders import embedder_card
    from dispenser.sim.similarity import simulator_table

    return simulator_table(args.similarity, args.similarity_group,
                           embedder_card(settings.vision.embedder,
                                         settings.vision.embedder_precision))


# ------------------------------------------------------------------------------- crowd

def _crowd(args: argparse.Namespace, settings: Settings) -> int:
    from dispenser.sim import report
    from dispenser.sim.crowd import study
    from dispenser.sim.scenario import load_scenario
    from dispenser.sim.timeline import ProgressBar

    scenario = load_scenario(args.scenario)
    table = _similarity(args, settings)
    bar = ProgressBar(1.0, label=f"{scenario.name} ")
    result = study(scenario, settings, table, args.seed,
                   progress=lambda done, total: bar.update(done / total,
                                                           f"run {done}/{total}"))
    bar.clear()
    written: list[Path] = []
    note = None
    if not args.no_report:
        directory = args.report or Path(f"sim-report-{scenario.name}")
        written, note = report.write_report(result, directory)
    if args.json:
        sys.stdout.write(report.to_json(result))
        return EXIT_OK
    print("\n".join(report.summary_lines(result)))
    if note:
        print(f"\n{note}")
    if written:
        print(f"\nreport: {written[1]} (plots and report.json beside it)")
    return EXIT_OK


# -------------------------------------------------------------------------------- live

_STAGES_SCRIPTED = {
    "real": ["service state machine, hold-still and decision (dispenser.service)",
             "face tracker (dispenser.vision.FaceTracker)",
             "template store in RAM: deny window, retention deletion, key shredding",
             "MotorLink over a pseudo-terminal to firmware_sim (the controller firmware)"],
    "simulated": ["camera and vision pipeline: scripted visitors with synthetic identity "
                  "templates (no face images ship with the project)",
                  "the paper motor and roll (firmware_sim's plant)",
                  "time: a virtual clock, faster than real time"],
}
_STAGES_FRAMES = {
    "real": ["vision pipeline: detection, quality gate, alignment, embedding (ONNX)",
             *_STAGES_SCRIPTED["real"]],
    "simulated": ["the paper motor and roll (firmware_sim's plant)"],
}


def _sim_settings(settings: Settings) -> Settings:
    """The configuration with the controller always simulated (no hardware here)."""
    return dataclasses.replace(settings,
                               serial=dataclasses.replace(settings.serial, port="sim"))


def _live(args: argparse.Namespace, settings: Settings) -> int:
    from dispenser.sim.timeline import HEADER, ProgressBar

    settings = _sim_settings(settings)
    scripted = args.camera is None and args.video is None and args.images is None
    # A missing or unreadable --video/--images is the one line the user sees: checked
    # before anything is printed.
    source = None if scripted else _open_frames(args, settings)
    stages = _stages(args, settings, scripted)
    bar = ProgressBar(1.0, label="simulating ")
    emit, progress = _timeline(bar, show_rows=not args.json)
    preview, preview_note = _preview(args)
    if not args.json:
        _print_intro(args, settings, stages, preview_note)
        print(HEADER)
    stop = threading.Event()
    with _signals_stop(stop) as received:
        if source is None:
            result, mode = _run_story(args, settings, emit, progress, preview, stop), "scripted"
        else:
            result, mode = _run_frames(args, settings, source, emit, progress, preview, stop)
    bar.clear()
    if args.json:
        document = _live_document(args, settings, mode, stages, result)
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    else:
        _print_summary(result)
    return _live_exit_code(result, interrupted=signal.SIGINT in received)


def _stages(args: argparse.Namespace, settings: Settings,
            scripted: bool) -> dict[str, list[str]]:
    """Which stages of the machine this run uses for real and which it simulates."""
    if not scripted:
        return _STAGES_FRAMES
    calibration = f"synthetic identities fitted to {_similarity(args, settings).describe()}"
    return {**_STAGES_SCRIPTED, "simulated": [*_STAGES_SCRIPTED["simulated"], calibration]}


def _timeline(bar: ProgressBar, *, show_rows: bool) -> tuple[Emit, Progress]:
    """Print each timeline row above the progress bar (nothing with --json), and move the
    bar on."""
    from dispenser.sim.timeline import clock_text, format_row

    def emit(row: Row) -> None:
        if show_rows:
            bar.clear()
            print(format_row(row), flush=True)

    def progress(done: float, total: float) -> None:
        bar.update(done / total if total else 0.0, f"{clock_text(done)}/{clock_text(total)}")

    return emit, progress


@contextlib.contextmanager
def _signals_stop(stop: threading.Event) -> Iterator[list[int]]:
    """Ctrl-C or SIGTERM end the run the same way: the machine stops, the store is
    zeroised and the simulated controller's pty folder removed. Yields the signals
    received; the handler only records and sets the event (writing from a handler can
    re-enter a write)."""
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _live_document(args: argparse.Namespace, settings: Settings, mode: str,
                   stages: dict[str, list[str]], result: LiveResult) -> dict[str, Any]:
    """The --json output of a live run."""
    from dispenser.store.rule import threshold_for

    return {
        "format": LIVE_FORMAT, "mode": mode, "seed": args.seed,
        "stages": stages,
        "settings": {"threshold": threshold_for(1, settings),
                     "deny_window_s": settings.store.deny_window_s,
                     "retention_s": settings.store.retention_s},
        "timeline": [r.as_dict() for r in result.rows],
        "outcomes": result.outcomes, "counters": result.counters,
        "skipped_images": [dataclasses.asdict(s) for s in result.skipped],
        "simulated_s": round(result.duration_s, 1),
    }


def _live_exit_code(result: LiveResult, *, interrupted: bool) -> int:
    """130 when Ctrl-C cut the run short, 0 when it was stopped otherwise (SIGTERM, the
    preview closed) or every scripted visit went as expected, else 1."""
    if result.stopped_early:
        return EXIT_INTERRUPTED if interrupted else EXIT_OK
    ok = all(o["expected"] == o["observed"] for o in result.outcomes)
    return EXIT_OK if ok else EXIT_FAILURE


def _preview(args: argparse.Namespace) -> tuple[Preview | None, str | None]:
    wanted = args.preview if args.preview is not None else args.camera is not None
    if not wanted:
        return None, None
    from dispenser.sim.preview import open_preview

    return open_preview()


def _print_intro(args: argparse.Namespace, settings: Settings, stages: dict[str, list[str]],
                 preview_note: str | None) -> None:
    from dispenser.store.rule import threshold_for

    speed = ("real time" if args.camera is not None else
             f"{min(args.speed, MAX_SPEED):g}x real time")
    print("dispenser simulate: the whole machine on this computer "
          f"(deny window {settings.store.deny_window_s:g} s, retention "
          f"{settings.store.retention_s:g} s, threshold {threshold_for(1, settings):g}, "
          f"{speed})")
    print("  real:      " + "\n             ".join(stages["real"]))
    print("  simulated: " + "\n             ".join(stages["simulated"]))
    if preview_note:
        print(f"  preview:   {preview_note}")
    print()


def _print_summary(result: LiveResult) -> None:
    c = result.counters
    print()
    print(f"after {result.duration_s / 60:.1f} minutes of machine time: served {c['served']}, "
          f"denied {c['denied']}, no-scan button {c['button_served']}, paper "
          f"{c['paper_mm'] / 1000:.2f} m; templates deleted at retention "
          f"{c['store_deletions']}, still in RAM {c['store_occupancy']}")
    for s in result.skipped:
        print(f"  image skipped: {s.image}: {s.reason}")
    if result.stopped_early:
        print("stopped early (Ctrl-C or the preview was closed)")
    elif result.outcomes:
        good = sum(o["expected"] == o["observed"] for o in result.outcomes)
        print(f"scripted visits behaving as expected: {good}/{len(result.outcomes)}")
        for o in result.outcomes:
            if o["expected"] != o["observed"]:
                print(f"  {o['who']} at {o['at']} s: expected {o['expected']}, "
                      f"got {o['observed']}")


def _run_story(args: argparse.Namespace, settings: Settings, emit: Emit, progress: Progress,
               preview: Preview | None, stop: threading.Event) -> LiveResult:
    from dispenser.sim.identities import IdentityModel
    from dispenser.sim.live import run_scripted
    from dispenser.sim.scripted import SyntheticVision, default_script, script_end
    script = default_script(settings)
    vision = SyntheticVision(script, IdentityModel.fit(_similarity(args, settings)), args.seed)
    return run_scripted(settings, script, vision, script_end(script, settings),
                        speed=args.speed, emit=emit, progress=progress, preview=preview,
                        stop=stop)


@dataclasses.dataclass(frozen=True)
class _Frames:
    """The opened frame source of a --camera/--video/--images run, and its clock."""

    source: FrameSource
    clock: Clock
    mode: str


def _open_frames(args: argparse.Namespace, settings: Settings) -> _Frames:
    """Open --video or --images now (a camera may appear later): what is missing or cannot
    be read is bad input, one line, exit 2."""
    from dispenser.clock import BootClock, VirtualClock
    from dispenser.service.frames import CaptureSource, open_at_start
    from dispenser.sim.image_visits import ImageVisits
    from dispenser.sim.live import START_S

    if args.camera is not None:
        clock = BootClock()
        return _Frames(CaptureSource(str(args.camera), clock, width=settings.camera.width,
                                     height=settings.camera.height), clock, "camera")
    virtual = VirtualClock(start=START_S)
    source: FrameSource
    if args.video is not None:
        if not args.video.is_file():
            raise DispenserError(f"simulate: --video {args.video} "
                                 f"{'is a folder' if args.video.is_dir() else 'does not exist'}")
        source, mode = CaptureSource(str(args.video), virtual), "video"
    else:
        source, mode = ImageVisits(args.images, virtual,
                                   patience_s=settings.vision.hold_still_s + VISIT_SLACK_S), \
            "images"
    open_at_start(source)
    return _Frames(source, virtual, mode)


def _run_frames(args: argparse.Namespace, settings: Settings, frames: _Frames, emit: Emit,
                progress: Progress, preview: Preview | None, stop: threading.Event
                ) -> tuple[LiveResult, str]:
    from dispenser.sim.live import run_frames
    from dispenser.vision import FacePipeline

    try:
        pipeline = FacePipeline(settings.vision, threads=settings.vision.threads)
    except BaseException:
        frames.source.close()
        raise
    result = run_frames(settings, frames.source, pipeline, frames.clock, speed=args.speed,
                        emit=emit, progress=progress, preview=preview, stop=stop,
                        max_s=args.duration)
    return result, frames.mode

"""`dispenser run`: the service on the board (camera, controller, display).

    dispenser run [--config FILE] [--source SPEC]     run until SIGTERM / Ctrl-C
    dispenser run --status [--json]                    print the running service's counters

Start-up refuses, with one line, what cannot work: an invalid configuration (the CLI names
the key), a model file that is missing or does not match its sha256 (the pipeline names
the file and the expected hash), a video file or image directory that does not exist, a
controller that does not answer. A camera that is missing or unplugged is not a start-up
error: the service shows "Temporarily unavailable" and re-opens it with back-off.

A video file or image directory is played at its own pace on the device clock, from the
first frame the service reads, and the service exits 0 when it ends (how to try the machine
on a laptop with a recording). Like a live camera it drops the frames the service is too
slow for; `--every-frame` replays a video file without dropping any (playback then falls
behind the recording on a slow CPU), so recorded footage is analysed completely.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from dispenser.clock import BootClock, Clock
from dispenser.config import Settings
from dispenser.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, DispenserError
from dispenser.logsafe import event
from dispenser.service.frames import FrameSource, is_camera, open_at_start, open_source
from dispenser.service.service import DispenserService
from dispenser.service.status import (
    SERVING_LOCK,
    format_status,
    is_serving,
    read_status,
    runtime_dir,
    serving,
)

_log = logging.getLogger("dispenser.run")

# The run loop's watchdog ends the process (systemd restarts it) when one step has not
# returned for this many times vision.watchdog_s: a hung driver or model call.
STUCK_FACTOR = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", action="store_true",
                        help="print the counters of the running service (no personal data) "
                             "and exit; exit 1 when no service is running")
    parser.add_argument("--json", action="store_true",
                        help="with --status: print the counters as one JSON object")
    parser.add_argument("--source", metavar="SPEC", default=None,
                        help="override camera.source: a camera index, a /dev/video* device, "
                             "a video file or an image directory")
    parser.add_argument("--every-frame", action="store_true",
                        help="a video file source: analyse every frame, playing slower than "
                             "recorded when the CPU cannot keep up, instead of dropping late "
                             "frames like a live camera (replaying recorded footage)")
    parser.add_argument("--status-dir", metavar="DIR", type=Path, default=None,
                        help="where the status file is written and read (default: "
                             "/run/dispenser, else $XDG_RUNTIME_DIR/dispenser)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    status_dir = args.status_dir or runtime_dir()
    if args.status:
        return _print_status(status_dir, as_json=args.json)
    from dispenser.privacy.memory import disable_core_dumps

    disable_core_dumps()
    clock = BootClock()
    spec = args.source if args.source is not None else settings.camera.source
    frames = _frames(spec, settings, clock, every_frame=args.every_frame)
    with serving(status_dir), _Machine(settings, clock, frames, status_dir) as machine:
        stop = threading.Event()
        received = _stop_on_signals(stop)
        _StuckStepWatchdog(machine.service, clock,
                           STUCK_FACTOR * settings.vision.watchdog_s,
                           machine.emergency_stop, stop).start()
        event(_log, "started", source=repr(frames.name), port=repr(settings.serial.port),
              state_dir=repr(str(status_dir)))
        machine.service.run(stop)
        for name in received:
            event(_log, "signal", signal=name)
        _log.info("stopped %s", format_status(machine.service.status()))
    # systemd stops the service with SIGTERM: a clean stop. Ctrl-C is an interruption.
    return EXIT_INTERRUPTED if "SIGINT" in received else EXIT_OK


def _print_status(status_dir: Path, *, as_json: bool) -> int:
    """`--status`: the running service's counters; a stopped service is an error (its
    status file, if any, holds the counters of a run that has ended)."""
    if not is_serving(status_dir):
        raise DispenserError(f"status: dispenser run is not running (no service holds "
                             f"{status_dir / SERVING_LOCK})", exit_code=EXIT_FAILURE)
    record = read_status(status_dir)
    print(json.dumps(record) if as_json else format_status(record))
    return EXIT_OK


def _frames(spec: str, settings: Settings, clock: Clock, *, every_frame: bool = False
            ) -> FrameSource:
    """The frame source; a file or directory must be there now (a camera may come later)."""
    if every_frame and (is_camera(spec) or Path(spec).is_dir()):
        raise DispenserError(f"--every-frame applies to a video file source, not {spec!r}")
    frames = open_source(spec, clock, width=settings.camera.width,
                         height=settings.camera.height, every_frame=every_frame)
    if not is_camera(spec):
        open_at_start(frames)
    return frames


class _Machine:
    """Everything `run` builds, closed in reverse order (templates zeroised on the way)."""

    def __init__(self, settings: Settings, clock: Clock, frames: FrameSource,
                 status_dir: Path) -> None:
        from dispenser.display.open import open_display
        from dispenser.motor_connection import connect_motor
        from dispenser.store import TemplateStore
        from dispenser.store.rule import rule_for
        from dispenser.vision import FacePipeline

        self._closers: list[Callable[[], None]] = [frames.close]
        try:
            pipeline = FacePipeline(settings.vision, threads=settings.vision.threads)
            self._closers.append(pipeline.close)
            motor = connect_motor(settings.serial, clock)
            self._closers.append(motor.close)
            rule = rule_for(settings)
            event(_log, "match_rule", rule=repr(rule.describe()))
            store = TemplateStore(settings.store, rule=rule, clock=clock)
            self._closers.append(store.close)
            self._store = store
            display, close_display = open_display(settings.display, clock)
            self._closers.append(close_display)
            self._install_guard(status_dir)
            self.service = DispenserService(
                settings, clock=clock, frames=frames, store=store, pipeline=pipeline,
                motor=motor.link, display=display, status_dir=status_dir)
            self._closers.append(self.service.close)
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _install_guard(status_dir: Path) -> None:
        """From here on no socket and no file write outside the status directory (the
        panel, if any, was opened before)."""
        from dispenser.privacy import guard

        guard.install([status_dir])

    def emergency_stop(self) -> None:
        self._store.emergency_zeroise()

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # keep closing the rest (the store zeroises last)
                event(_log, "close_failed", logging.WARNING, kind=type(exc).__name__)

    def __enter__(self) -> _Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop_on_signals(stop: threading.Event) -> list[str]:
    """SIGTERM/SIGINT end the service loop; returns the names of the signals received,
    for the caller to log once the loop has ended. The handler itself writes nothing: it
    runs between two bytecodes of the main thread, and a log line written from it while
    the main thread was inside a write to the same stream raises "reentrant call", which
    would tear through the service loop instead of stopping it (a test child that printed
    from its handler failed this way 8 times in 10 on a loaded, emulated arm64 board)."""
    received: list[str] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return received


class _StuckStepWatchdog(threading.Thread):
    """Ends the process when one service step has not returned for `limit_s`: a hung
    camera driver or model call cannot be interrupted from Python, and systemd's
    Restart=on-failure brings the machine back. The store is zeroised first."""

    def __init__(self, service: DispenserService, clock: Clock, limit_s: float,
                 before_exit: Callable[[], Any], stop: threading.Event) -> None:
        super().__init__(name="step-watchdog", daemon=True)
        self._service = service
        self._clock = clock
        self._limit = limit_s
        self._before_exit = before_exit
        self._halt = stop

    def run(self) -> None:
        while self._clock.sleep_until(self._clock.now() + 1.0, self._halt):
            stuck_for = self._clock.now() - self._service.last_step_at
            if stuck_for > self._limit:
                event(_log, "pipeline_stuck", logging.CRITICAL, seconds=round(stuck_for))
                self._before_exit()
                os._exit(EXIT_FAILURE)
                return  # only reached where os._exit is replaced (tests)

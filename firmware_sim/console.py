"""`python -m firmware_sim` / `dispenser firmware-sim`: serve the simulated controller and
let a person at the terminal play the machine's physical world (door, button, roll, faults).

The device path goes to stdout first, alone on its line, so a script can read it:
    path=$(python -m firmware_sim </dev/null | head -n1)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from dispenser.clock import BootClock, Clock
from dispenser.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from firmware_sim.server import FAULTS, SimulatedController

HELP = """commands:
  door open | door close     open or close the service door
  button                     press the no-scan button
  roll MM                    put a roll with MM of paper in
  jam                        the next ribbon jams after 100 mm
  fault NAME [MS]            inject a fault (list: fault ?)
  show                       paper out, roll left, motor
  help                       this text
Ctrl-C (or Ctrl-D then Ctrl-C) stops the simulator (exit 130); SIGTERM stops it too (exit 0)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by both entry points."""
    parser.add_argument("--speed", type=float, default=1.0,
                        help="motor speed factor (1 = 150 mm/s, a 600 mm ribbon in 4 s)")
    parser.add_argument("--roll-mm", type=int, default=50_000,
                        help="paper on the roll at start, in mm (default 50000)")
    parser.add_argument("--seed", type=int, default=None,
                        help="random seed for boot ids and fault bytes (reproducible runs)")


def _handle(sim: SimulatedController, words: list[str]) -> str:
    cmd = words[0].lower()
    if cmd == "door" and len(words) == 2 and words[1] in ("open", "close"):
        sim.set_door(words[1] == "open")
        return f"door {words[1]}"
    if cmd == "button":
        sim.press_button()
        return "button pressed"
    if cmd == "roll" and len(words) == 2 and words[1].isdigit():
        sim.set_roll(int(words[1]))
        return f"roll now {int(words[1])} mm"
    if cmd == "jam":
        sim.jam_next()
        return "the next ribbon will jam"
    if cmd == "fault" and len(words) >= 2:
        if words[1] not in FAULTS:
            return "faults: " + "; ".join(f"{k}: {v}" for k, v in FAULTS.items())
        ms = int(words[2]) if len(words) > 2 and words[2].isdigit() else None
        sim.inject(words[1], ms=ms)
        return f"injected {words[1]}"
    if cmd == "show":
        return (f"paper out {sim.paper_out_mm:.0f} mm, roll left {sim.plant.paper_left_mm()} mm, "
                f"motor {'on' if sim.motor_on else 'off'}, resets {sim.resets}")
    return HELP


class _Terminated(Exception):
    """SIGTERM or SIGHUP arrived: stop serving (the pty, its folder and link are removed)."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


def serve(clock: Clock, *, speed: float, roll_mm: int, seed: int | None) -> int:
    """Serve until Ctrl-C (exit 130), SIGTERM or SIGHUP (exit 0); returns the exit code.
    Either way the simulator is stopped, so no /tmp/dispenser-sim-* folder or dangling
    link is left behind (Python's default for SIGTERM would end the process without)."""
    if speed <= 0 or roll_mm < 0:
        print("firmware-sim: --speed must be > 0 and --roll-mm >= 0", file=sys.stderr)
        return EXIT_USAGE
    previous = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
    sim = SimulatedController(clock=clock, speed=speed, roll_mm=roll_mm, seed=seed)
    code = EXIT_OK
    try:
        path = sim.start()
        print(path, flush=True)
        print(f"firmware-sim: simulated motor controller on {path} (now {sim.pty_path}); "
              "type 'help' for commands, Ctrl-C to stop", file=sys.stderr, flush=True)
        for line in sys.stdin:
            words = line.split()
            if words:
                print(_handle(sim, words), file=sys.stderr, flush=True)
        threading.Event().wait()  # stdin closed: keep serving until a signal
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except _Terminated:
        code = EXIT_OK
    finally:
        for signum in previous:  # a second signal must not cut the clean-up short
            signal.signal(signum, signal.SIG_IGN)
        sim.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m firmware_sim",
                                     description="serve the simulated motor controller on a "
                                                 "pseudo-terminal")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return serve(BootClock(), speed=args.speed, roll_mm=args.roll_mm, seed=args.seed)

"""`dispenser bench`: measure the matching (and, when registered, vision) stages here.

Runs the measurements registered in `dispenser.perf` from the installed package (no
repository checkout, no pytest) and prints a table headed by the machine description, or
JSON with `--json`. Comparisons against references are measured in the same run. As each
measurement starts, one progress line goes to stderr.
"""

from __future__ import annotations

import argparse
import sys

from dispenser import perf
from dispenser.config import Settings
from dispenser.errors import DispenserError


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes takes comma-separated integers, not {text!r}") from None
    if not sizes or any(not 1 <= n <= 1_048_576 for n in sizes):
        raise argparse.ArgumentTypeError("--sizes must each be between 1 and 1048576")
    return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only this measurement (repeatable; see --list)")
    parser.add_argument("--list", action="store_true", help="list the measurements and exit")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run that checks every stage works: store sizes 16 and "
                             "1024 only, capacity 1024 only, the same timing; its figures are "
                             "not for comparison (docs/performance.md)")
    parser.add_argument("--sizes", type=_sizes, metavar="N,N,...",
                        help="store sizes for store.decide "
                             "(default 16,256,1024,4096,65536; up to 1048576)")
    parser.add_argument("--min-time", type=float, default=0.2, metavar="SECONDS",
                        help="time each stage for at least this long (default 0.2)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _progress(k: int, n: int, name: str) -> None:
    """One line on stderr as each measurement starts: a full run takes minutes, and stdout
    stays the table (or the JSON) alone."""
    print(f"bench: {k}/{n} {name}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    registry = perf.load_measurements()
    if args.list:
        for m in registry.values():
            print(f"{m.name:16} {m.description}")
        return 0
    unknown = [name for name in args.only or () if name not in registry]
    if unknown:
        raise DispenserError(f"bench: unknown measurement {unknown[0]!r} "
                             f"(known: {', '.join(registry)})")
    if not 0.0 < args.min_time <= 60.0:
        raise DispenserError(f"bench: --min-time {args.min_time} must be in (0, 60]")
    options = perf.Options(quick=args.quick, min_time_s=args.min_time, sizes=args.sizes)
    results = perf.run(args.only, options, progress=_progress)
    described = perf.machine()
    print(perf.to_json(results, described) if args.json
          else perf.format_table(results, described))
    return 0

"""Named performance measurements, one timer, and the table `dispenser bench` prints.

A *measurement* is a function `(Options) -> list[Result]` registered under a dotted name
("store.decide", "vision.detect", ...). `dispenser bench` imports every module listed in
`MEASUREMENT_MODULES`, runs the registered measurements (all, or those picked with
`--only`), and prints one table headed by a description of the machine (or JSON with
`--json`). It works from an installed package: no repository checkout, no pytest.

Adding a stage (e.g. for the vision pipeline): in your own module

    from dispenser import perf

    @perf.measurement("vision.detect", "face detection on one 640x480 frame")
    def _detect(options: perf.Options) -> list[perf.Result]:
        pipe, frame = ...                               # set up outside the timed call
        return [perf.timed("vision.detect 640x480", lambda: pipe.detect(frame), options)]

then add the module's dotted name to `MEASUREMENT_MODULES` below (one-line edit). Time
with `timed`/`time_call` so every stage is measured the same way (median of repeated
calls), and put comparisons against a reference measured in the same run into
`Result.note` ("2.3x numpy") rather than comparing against fixed numbers.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

from dispenser import __version__

# Modules whose import registers measurements. Vision adds its module here.
MEASUREMENT_MODULES: tuple[str, ...] = (
    "dispenser.store.bench",
    "dispenser.vision.bench",
)


@dataclass(frozen=True)
class Options:
    """How hard to measure. `quick` is for a smoke run (small sizes, short timing)."""

    quick: bool = False
    min_time_s: float = 0.2  # repeat each timed call for at least this long
    max_rounds: int = 1000
    sizes: tuple[int, ...] | None = None  # problem sizes, when a measurement has them


@dataclass(frozen=True)
class Result:
    """One line of the table: a median time per call (unit "s"), or another quantity such
    as a memory footprint (unit "B")."""

    name: str
    value: float
    rounds: int
    note: str = ""
    unit: str = "s"


@dataclass(frozen=True)
class Measurement:
    """A registered measurement."""

    name: str
    description: str
    run: Callable[[Options], list[Result]] = field(repr=False)


REGISTRY: dict[str, Measurement] = {}

MeasureFn = Callable[[Options], list[Result]]


def measurement(name: str, description: str) -> Callable[[MeasureFn], MeasureFn]:
    """Register the decorated function as measurement `name` (unique)."""

    def register(fn: MeasureFn) -> MeasureFn:
        if name in REGISTRY:
            raise ValueError(f"duplicate measurement name {name}")
        REGISTRY[name] = Measurement(name, description, fn)
        return fn

    return register


def time_call(fn: Callable[[], object], options: Options) -> tuple[float, int]:
    """Median seconds per call of `fn` over rounds lasting `options.min_time_s` in total
    (at least 3 rounds, at most `options.max_rounds`), after one untimed warm-up call."""
    fn()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < 3 or (spent < options.min_time_s
                               and len(samples) < options.max_rounds):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        samples.append(elapsed)
        spent += elapsed
    return statistics.median(samples), len(samples)


def timed(name: str, fn: Callable[[], object], options: Options, note: str = "") -> Result:
    """`time_call` wrapped into a `Result`."""
    seconds, rounds = time_call(fn, options)
    return Result(name, seconds, rounds, note)


def load_measurements() -> dict[str, Measurement]:
    """Import every module in `MEASUREMENT_MODULES` (registering its measurements)."""
    for module in MEASUREMENT_MODULES:
        importlib.import_module(module)
    return REGISTRY


def run(names: Sequence[str] | None, options: Options,
        progress: Callable[[int, int, str], None] | None = None) -> list[Result]:
    """Run the named measurements (all when `names` is None) in registration order;
    `progress(k, n, name)` is called before the k-th of n starts (1-based)."""
    registry = load_measurements()
    chosen = list(registry) if names is None else list(names)
    results: list[Result] = []
    for k, name in enumerate(chosen, start=1):
        if progress is not None:
            progress(k, len(chosen), name)
        results.extend(registry[name].run(options))
    return results


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "numba": _version("numba"),
        "onnxruntime": _version("onnxruntime"),
        # the package's own version: its distribution is not named "dispenser" (pyproject)
        "dispenser": __version__,
    }


def _human(value: float, unit: str) -> str:
    if unit == "B":
        scales: tuple[tuple[str, float], ...] = (("GiB", 2.0**30), ("MiB", 2.0**20),
                                                 ("KiB", 2.0**10))
        for name, scale in scales:
            if value >= scale:
                return f"{value / scale:.3g} {name}"
        return f"{value:.0f} B"
    for name, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if value >= scale:
            return f"{value / scale:.3g} {name}"
    return f"{value / 1e-9:.3g} ns"


def format_table(results: Sequence[Result], described: dict[str, str]) -> str:
    """The machine description, then one aligned row per result."""
    lines = [f"{key:12} {value}" for key, value in described.items()]
    lines.append("")
    width = max([len(r.name) for r in results] + [len("measurement")])
    lines.append(f"{'measurement':{width}}  {'value':>10}  {'rounds':>6}  note")
    for r in results:
        lines.append(f"{r.name:{width}}  {_human(r.value, r.unit):>10}  {r.rounds:>6}  "
                     f"{r.note}")
    return "\n".join(lines)


def to_json(results: Sequence[Result], described: dict[str, str]) -> str:
    """The same as `format_table`, as JSON (values in their unit: seconds or bytes)."""
    return json.dumps({"machine": described, "results": [asdict(r) for r in results]},
                      indent=2)

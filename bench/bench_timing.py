"""Timing shared by the benchmarks' speed-ratio targets (imported by module name: bench/ is
not a package).

Why interleaved best-of: a ratio against a reference measured in the same run only means
something if passing load on the machine hits every contender alike. Taking turns spreads
that load over all of them, and the best round is the one least disturbed by it.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time in seconds of each contender over `rounds`, the contenders taking turns.

    Each contender first runs once untimed: first runs allocate, plan and fill caches.
    """
    for run in contenders.values():
        run()
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best

"""Timing shared by the benchmarks' speed-ratio targets (imported by module name: bench/ is
not a package).

Why interleaved: a ratio against a reference measured in the same run only means something
if passing load on the machine hits every contender alike. Taking turns spreads that load
over all of them. Two summaries of the same rounds:

* `best_of`: each contender's best round, the one least disturbed by other load;
* `median_ratios`: the median over rounds of each contender's time over the reference's
  time in the same round. On a shared machine whose speed drifts by 2x or more over a run
  (other virtual machines on the host), the two bests can come from different states of
  the machine; a ratio taken within one round compares like with like.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed_rounds(contenders: dict[str, Callable[[], object]],
                 rounds: int) -> list[dict[str, float]]:
    """Wall seconds of each contender in each of `rounds` rounds, the contenders taking
    turns within a round.

    Each contender first runs once untimed: first runs allocate, plan and fill caches.
    """
    for run in contenders.values():
        run()
    measured = []
    for _ in range(rounds):
        this_round = {}
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            this_round[name] = time.perf_counter() - start
        measured.append(this_round)
    return measured


def best_of(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time in seconds of each contender over `rounds` interleaved rounds."""
    measured = timed_rounds(contenders, rounds)
    return {name: min(r[name] for r in measured) for name in contenders}


def median_ratios(measured: list[dict[str, float]], reference: str) -> dict[str, float]:
    """Median over the rounds of `timed_rounds` of each contender's time / the reference's."""
    return {name: statistics.median(r[name] / r[reference] for r in measured)
            for name in measured[0]}

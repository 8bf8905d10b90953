"""Open-set evaluation of templates in RAM: what a crowd of strangers would see.

`dispenser calibrate --faces` embeds a folder of labelled photos and hands the templates
here. Every pair is scored (a pair of the same identity is genuine, of two identities an
impostor), per group (`<group>__<identity>` folders: a source or a population) and pooled.
What matters at the machine is not the pairwise false-match rate f but the chance that a
stranger is refused: the probe is compared with all N live templates, so

    P(refused | N live templates, threshold t) = 1 - (1 - f(t)) ** N

and the threshold the device uses grows with N (dispenser.store.rule). Repeat-takes are
the same person coming back within minutes: same-session genuine pairs (`session` labels).

Everything stays in the caller's arrays; only aggregate numbers leave this module (no
per-image score, no template). The quantile tables are what the simulator reads
(`[similarity.<group>]`, docs/simulator.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dispenser.vision.calibration import OperatingPoint, threshold_at_far

FloatArray = npt.NDArray[np.float64]

FAR_TARGETS = (1e-3, 1e-4, 1e-5)
"""Pairwise FAR levels reported with their threshold and TAR."""

CROWD_SIZES = (20, 60, 200)
"""Live-template counts reported: a quiet hour, a station peak, a very busy day."""

QUANTILE_PROBABILITIES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99,
                          0.999, 0.9999, 0.99999, 0.999999, 1.0)
"""Where the similarity tables are sampled (the upper tail densely, down to 1e-6: at a
station peak the refusal threshold sits where 1e-5 to 1e-6 of impostor pairs score)."""

TAIL_FARS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6)
"""Pairwise FAR levels at which the worst group's impostor tail is recorded."""

MIN_TAIL_PAIRS_ABOVE = 10
"""A tail point needs this many impostor pairs at or above it to count as measured."""

MIN_GROUP_IMPOSTOR_PAIRS = 1000

CEILING = 0.95
"""The recorded ceiling (see worst_case_tail), unless the floor is higher already."""

FLOOR_FAR = 1e-3
"""The recorded floor is the worst-case cosine at this pairwise FAR (rounded up): no
setting can make the rule refuse below it, whatever max_false_refusal says."""
"""A group with fewer impostor pairs is reported but cannot define the worst-case tail."""


def per_visit_refusal(pairwise_far: float, live: int) -> float:
    """Chance that a stranger matches at least one of `live` independent templates."""
    return float(-math.expm1(live * math.log1p(-min(pairwise_far, 1.0 - 1e-16))))


@dataclass(frozen=True)
class Scores:
    """One group's genuine, same-session genuine and impostor scores (RAM only)."""

    genuine: FloatArray
    same_session: FloatArray
    impostor: FloatArray

    def far(self, threshold: float) -> float:
        return float(np.count_nonzero(self.impostor >= threshold) / max(self.impostor.size, 1))

    def zeroise(self) -> None:
        for arr in (self.genuine, self.same_session, self.impostor):
            arr.fill(0.0)


def pair_scores(templates: npt.NDArray[np.float32], identities: Sequence[str],
                sessions: Sequence[str], members: npt.NDArray[np.bool_]) -> Scores:
    """All pairs among `members`: genuine (same identity), same-session genuine (same
    identity and session label, both non-empty), impostor (different identities)."""
    idx = np.flatnonzero(members)
    ids = np.asarray(identities)[idx]
    sess = np.asarray(sessions)[idx]
    sims = templates[idx] @ templates[idx].T
    upper = np.triu(np.ones(sims.shape, dtype=bool), 1)
    same_id = ids[:, None] == ids[None, :]
    same_sess = same_id & (sess[:, None] == sess[None, :]) & (sess[:, None] != "")
    try:
        return Scores(genuine=sims[upper & same_id].astype(np.float64),
                      same_session=sims[upper & same_sess].astype(np.float64),
                      impostor=sims[upper & ~same_id].astype(np.float64))
    finally:
        sims.fill(0.0)


@dataclass(frozen=True)
class GroupReport:
    """Aggregates of one group (or "all"): distributions, operating points, crowd figures."""

    name: str
    identities: int
    images: int
    genuine_pairs: int
    same_session_pairs: int
    impostor_pairs: int
    quantiles: dict[str, list[float]]
    at_far: tuple[OperatingPoint, ...]
    crowd: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def quantile_table(values: FloatArray) -> list[float]:
    if values.size == 0:
        return []
    return [round(float(v), 6) for v in np.quantile(values, QUANTILE_PROBABILITIES)]


Thresholds = dict[int, tuple[float, float]]
"""Live-template count N -> (likely, certain) thresholds of a decision rule."""


def crowd_figures(scores: Scores, thresholds: Thresholds) -> list[dict[str, Any]]:
    """Per N: wrongful refusal and short ribbon of a stranger, repeat-takes caught."""
    crowd = []
    for live, (likely, certain) in sorted(thresholds.items()):
        f_certain, f_likely = scores.far(certain), scores.far(likely)
        repeat = scores.same_session if scores.same_session.size else scores.genuine
        crowd.append({
            "live": live, "threshold": certain, "likely_threshold": likely,
            "pairwise_far": f_certain,
            "impostor_pairs_above": int(np.count_nonzero(scores.impostor >= certain)),
            "wrongful_refusal": per_visit_refusal(f_certain, live),
            "short_ribbon": per_visit_refusal(f_likely, live)
            - per_visit_refusal(f_certain, live),
            "repeat_caught": _share_at_least(repeat, certain),
            "repeat_shortened_or_caught": _share_at_least(repeat, likely),
            "repeat_pairs_are_same_session": bool(scores.same_session.size),
        })
    return crowd


def group_report(name: str, scores: Scores, identities: int, images: int,
                 rules: dict[str, Thresholds]) -> GroupReport:
    """The report of one group, with crowd figures under each named rule."""
    at_far: tuple[OperatingPoint, ...] = ()
    if scores.genuine.size and scores.impostor.size:
        at_far = tuple(threshold_at_far(scores.genuine, scores.impostor, f)
                       for f in FAR_TARGETS)
    return GroupReport(
        name=name, identities=identities, images=images,
        genuine_pairs=int(scores.genuine.size), same_session_pairs=int(scores.same_session.size),
        impostor_pairs=int(scores.impostor.size),
        quantiles={"impostor": quantile_table(scores.impostor),
                   "genuine": quantile_table(scores.genuine),
                   "genuine_same_session": quantile_table(scores.same_session)},
        at_far=at_far,
        crowd={rule: crowd_figures(scores, thresholds) for rule, thresholds in rules.items()})


def _share_at_least(values: FloatArray, threshold: float) -> float:
    return float(np.count_nonzero(values >= threshold) / values.size) if values.size else 0.0


@dataclass(frozen=True)
class ImpostorTail:
    """The worst-case impostor tail: envelope of the eligible groups' FAR at each cosine."""

    worst_group: str
    cosine: list[float]
    far: list[float]
    decades_per_0_1: float
    floor: float
    ceiling: float = 0.95  # CEILING, or the floor when that is higher

    def table(self) -> dict[str, Any]:
        """The card's `[calibration]` keys (dispenser.store.rule reads them)."""
        return {"status": "measured", "worst_group": self.worst_group,
                "tail_cosine": self.cosine, "tail_far": self.far,
                "tail_decades_per_0_1": self.decades_per_0_1, "floor": self.floor,
                "ceiling": self.ceiling}


def _group_tail(impostor: FloatArray) -> tuple[list[float], list[float], float]:
    """One group's measured tail points and the slope of its last measured decade."""
    cosine: list[float] = []
    far: list[float] = []
    for level in TAIL_FARS:
        if impostor.size * level < MIN_TAIL_PAIRS_ABOVE:
            break
        value = float(np.quantile(impostor, 1.0 - level))
        if cosine and value <= cosine[-1]:
            continue
        cosine.append(value)
        far.append(level)
    if len(cosine) < 2:
        return cosine, far, 0.0
    decades = math.log10(far[-2] / far[-1]) / (cosine[-1] - cosine[-2]) * 0.1
    return cosine, far, max(math.floor(decades * 10) / 10, 0.1)


def _cosine_at(tail: tuple[list[float], list[float], float], level: float) -> float:
    """A group's cosine at `level`: measured, or extrapolated past its last point."""
    cosine, far, decades = tail
    if level in far:
        return cosine[far.index(level)]
    return cosine[-1] + 0.1 * math.log10(far[-1] / level) / decades


def worst_case_tail(groups: dict[str, Scores]) -> ImpostorTail:
    """Record the heaviest impostor tail over groups with enough impostor pairs.

    At each FAR level the recorded cosine is the highest any eligible group needs, so every
    group's FAR there is at most the level. A group too small to measure a level (fewer
    than MIN_TAIL_PAIRS_ABOVE pairs above it) takes part with its own tail extrapolated
    from its last measured decade, so a small group with a heavy tail still lifts the
    envelope. Levels are recorded down to the deepest one some group measures. Beyond the
    last point the card extrapolates log10(FAR) linearly with the slope of the last
    recorded decade, rounded down to 0.1 decade per 0.1 cosine: a shallower slope gives
    higher thresholds (the safe side).

    The floor is the tail's cosine at FLOOR_FAR, rounded up to 0.01; the ceiling is
    CEILING (0.95), so that a very large crowd still leaves same-session repeat-takes
    recognisable, or the floor itself for an embedder whose strangers score above that
    (dlib's ResNet: its floor is 0.98).
    """
    tails = {g: _group_tail(s.impostor) for g, s in groups.items()
             if s.impostor.size >= MIN_GROUP_IMPOSTOR_PAIRS}
    tails = {g: t for g, t in tails.items() if len(t[0]) >= 2}
    if not tails:
        raise ValueError(f"no group has {MIN_GROUP_IMPOSTOR_PAIRS} impostor pairs and a "
                         "measurable tail: too few identities to record one")
    deepest = min(t[1][-1] for t in tails.values())
    cosine: list[float] = []
    far: list[float] = []
    heaviest: dict[str, int] = dict.fromkeys(tails, 0)
    for level in (x for x in TAIL_FARS if x >= deepest):
        need = {g: _cosine_at(t, level) for g, t in tails.items()}
        group = max(need, key=lambda g: need[g])
        heaviest[group] += 1
        value = round(need[group], 4)
        if cosine and value <= cosine[-1]:
            continue
        cosine.append(value)
        far.append(level)
    if len(cosine) < 2:
        raise ValueError("the impostor tail needs at least two measured points")
    decades = math.log10(far[-2] / far[-1]) / (cosine[-1] - cosine[-2]) * 0.1
    floor_at = next((c for c, f in zip(cosine, far, strict=True) if f <= FLOOR_FAR), cosine[-1])
    floor = math.ceil(floor_at * 100) / 100
    return ImpostorTail(worst_group=max(heaviest, key=lambda g: heaviest[g]),
                        cosine=cosine, far=far,
                        decades_per_0_1=max(math.floor(decades * 10) / 10, 0.1),
                        floor=floor, ceiling=max(CEILING, floor))

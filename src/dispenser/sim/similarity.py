"""Measured similarity distributions: the quantile tables the synthetic identities copy.

`dispenser calibrate --faces DIR --write-similarity FILE.toml` measures, per group of
people, the cosine similarity of every pair of different people (impostor) and of the
same person (genuine, and optionally genuine pairs from one session, the repeat-take case)
and records each distribution as quantiles at fixed probabilities. The embedder's model
card carries the same tables. One table:

    [similarity.kpop]
    probabilities = [0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99,
                     0.999, 0.9999, 1.0]
    impostor = [...]               # cosine quantiles at those probabilities
    genuine = [...]
    genuine_same_session = [...]   # optional
    impostor_pairs = 1001
    genuine_pairs = 1234
    genuine_same_session_pairs = 0

The simulator reads the group `[calibration].worst_group` names (the group whose impostor
tail is heaviest), unless told another. Where no measured table exists it falls back to
`PROVISIONAL_DLIB`, a Gaussian table built from four numbers derived from dlib's published
behaviour, and says so everywhere it reports.

Between quantiles the distribution is interpolated the way the tail matters: linearly in
the probability below the median, linearly in log10(1 - p) above it (so the share of pairs
at or above a cosine falls log-linearly between measured tail points, as in the model
card's `[calibration]` tail). Each quantile stands at its plotting position: with
`pairs` scores, the maximum is the score 1/pairs of the pairs reach, and the k-th highest
the score k/pairs reach (`Quantiles._points`), as calibrate counts them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from dispenser.embedders import read_card
from dispenser.errors import DispenserError
from dispenser.tomlfile import read_toml

KINDS = ("impostor", "genuine", "genuine_same_session")
POOLED_GROUP = "all"
"""The group calibrate writes for every face pooled: where repeat-takes come from when the
chosen group has no same-session pairs (a repeat-take is a same-session pair by nature)."""
# The probabilities the simulator's fit reads; a table must reach this far into each tail.
LOWEST_P = 0.05
HIGHEST_P = 0.9999
STANDARD_PROBABILITIES = (0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99,
                          0.999, 0.9999, 1.0)


class SimilarityError(DispenserError):
    """A similarity table or file cannot be used (one line naming the key)."""


@dataclass(frozen=True)
class Quantiles:
    """One similarity distribution: cosine quantiles at increasing probabilities."""

    probabilities: tuple[float, ...]
    values: tuple[float, ...]
    pairs: int  # how many pairs were measured (0 when unknown)

    def _points(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, cosine) in the interpolation coordinate (`_tail_coordinate`).

        With the pair count n known, each value is placed at its plotting position: the
        table holds numpy's default (linear) quantiles of n scores, whose value at p is the
        score of rank (n - 1) p, which (n - (n - 1) p) / n of the pairs reach. So the
        maximum stands at 1 - 1/n and the k-th highest score at a share k/n of pairs at or
        above it, the share calibrate counts (read as 1 - p instead, the k-th highest
        score would claim (k - 1)/(n - 1): half the truth for the second highest). With
        the count unknown, the maximum stands a decade past the last tail point."""
        p = np.array(self.probabilities, dtype=np.float64)
        if self.pairs >= 2:
            p = p * (self.pairs - 1) / self.pairs
        elif p[-1] >= 1.0:
            p[-1] = 1.0 - (1.0 - p[-2]) / 10.0
        return _tail_coordinate(p), np.asarray(self.values, dtype=np.float64)

    def _last_slope(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The points and d(cosine)/d(tail coordinate) of the last rising tail segment,
        which both directions of interpolation continue beyond the measured maximum."""
        x, q = self._points()
        rising = np.nonzero(np.diff(q) > 0)[0]
        k = int(rising[-1]) if len(rising) else len(q) - 2
        return x, q, float((q[k + 1] - q[k]) / (x[k + 1] - x[k]))

    def quantile(self, p: float | np.ndarray) -> np.ndarray:
        """The interpolated cosine at probability p (below the minimum: the minimum;
        past the maximum's probability: extrapolated, at most 1)."""
        x, q, slope = self._last_slope()
        at = _tail_coordinate(np.asarray(p, dtype=np.float64))
        beyond = np.minimum(q[-1] + slope * (at - x[-1]), 1.0)
        out: np.ndarray = np.where(at > x[-1], beyond, np.interp(at, x, q))
        return out

    def tail_share(self, cosine: float | np.ndarray) -> np.ndarray:
        """Share of pairs scoring at or above `cosine` (1 - CDF), interpolated as the
        quantiles are and extrapolated the same way beyond the measured maximum."""
        x, q, slope = self._last_slope()
        c = np.asarray(cosine, dtype=np.float64)
        inside = _share_from_coordinate(np.interp(c, q, x))
        beyond = _share_from_coordinate(x[-1] + (c - q[-1]) / max(slope, 1e-9))
        out: np.ndarray = np.where(c > q[-1], beyond, inside)
        return out


def _tail_coordinate(p: np.ndarray) -> np.ndarray:
    """p below 0.5; 0.5 + log10(0.5 / (1 - p)) above (continuous, increasing)."""
    safe = np.minimum(p, 1.0 - 1e-15)
    out: np.ndarray = np.where(p <= 0.5, p, 0.5 + np.log10(0.5 / (1.0 - safe)))
    return out


def _share_from_coordinate(x: np.ndarray) -> np.ndarray:
    """1 - p for a tail coordinate x (the inverse of `_tail_coordinate`)."""
    out: np.ndarray = np.where(x <= 0.5, 1.0 - x, 0.5 * 10.0 ** -(np.maximum(x, 0.5) - 0.5))
    return out


@dataclass(frozen=True)
class SimilarityTable:
    """The distributions of one group, and where they came from (for every report)."""

    impostor: Quantiles
    genuine: Quantiles
    genuine_same_session: Quantiles | None
    group: str
    source: str        # file or model card the numbers came from
    status: str        # "measured" or "provisional"
    same_session_group: str = ""  # where genuine_same_session came from, if not `group`

    def describe(self) -> str:
        """One line: which statistics, which group, from where."""
        same = ("with same-session genuine pairs" if self.genuine_same_session is not None
                else "no same-session pairs: repeat-takes drawn as cross-session genuine")
        if self.same_session_group:
            same = f"same-session genuine pairs of group {self.same_session_group!r}"
        if not self.group:
            return f"{self.status}: {self.source}; {same}"
        return (f"{self.status}: group {self.group!r} of {self.source} "
                f"({self.impostor.pairs} impostor / {self.genuine.pairs} genuine pairs; "
                f"{same})")

    def per_visit_wrongful_refusal(self, threshold: float, live: int) -> float:
        """Chance a stranger matches one of `live` templates at `threshold`, if each
        comparison is an independent draw from the impostor distribution (`any_of`)."""
        return any_of(float(self.impostor.tail_share(threshold)), live)


def any_of(f: float, live: int) -> float:
    """1 - (1 - f)^N: the chance that at least one of N = `live` independent comparisons,
    each reaching the threshold with probability f, reaches it."""
    return -math.expm1(max(live, 1) * math.log1p(-min(f, 1.0 - 1e-15)))


def _error(where: str, key: str, what: str) -> SimilarityError:
    return SimilarityError(f"similarity: {where}: {key} {what}")


def _numbers(table: dict[str, Any], where: str, key: str) -> tuple[float, ...]:
    values = table.get(key)
    if (not isinstance(values, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in values)):
        raise _error(where, key, "must be a list of finite numbers")
    return tuple(float(v) for v in values)


def _pairs(table: dict[str, Any], where: str, key: str) -> int:
    value = table.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _error(where, key, f"must be a whole number >= 0, not {value!r}")
    return value


def quantiles_from_table(table: dict[str, Any], where: str, kind: str,
                         probabilities: tuple[float, ...]) -> Quantiles | None:
    """One distribution of a `[similarity.<group>]` table (None for an absent or empty
    optional `genuine_same_session`)."""
    if kind == "genuine_same_session" and not table.get(kind):
        return None
    values = _numbers(table, where, kind)
    if len(values) != len(probabilities):
        raise _error(where, kind, f"has {len(values)} values, probabilities "
                                  f"{len(probabilities)}")
    if any(b < a for a, b in itertools.pairwise(values)) or not all(
            -1.0 <= v <= 1.0 for v in values):
        raise _error(where, kind, "must be non-decreasing cosines in [-1, 1]")
    return Quantiles(probabilities, values, _pairs(table, where, f"{kind}_pairs"))


def table_from_card(card: dict[str, Any], source: str, group: str | None = None,
                    status: str | None = None) -> SimilarityTable | None:
    """The `[similarity.<group>]` table of a parsed card or calibrate file: `group`, else
    `[calibration].worst_group`, else the only group. None when the document has no
    `[similarity]` tables at all; one-line errors for anything unusable."""
    tables = card.get("similarity")
    if tables is None:
        return None
    if not isinstance(tables, dict) or not tables or not all(
            isinstance(t, dict) for t in tables.values()):
        raise SimilarityError(f"similarity: {source}: [similarity] must hold one "
                              "[similarity.<group>] table per group")
    calibration = card.get("calibration", {})
    if not isinstance(calibration, dict):
        raise SimilarityError(f"similarity: {source}: [calibration] must be a table")
    if group is None:
        group = calibration.get("worst_group")
        if group is None and len(tables) == 1:
            group = next(iter(tables))
        if not isinstance(group, str):
            raise SimilarityError(
                f"similarity: {source}: [calibration] worst_group must name one of the "
                f"groups ({', '.join(sorted(tables))}), or choose with --similarity-group")
    if group not in tables:
        raise SimilarityError(f"similarity: {source}: no [similarity.{group}] table "
                              f"(groups: {', '.join(sorted(tables))})")
    table, where = tables[group], f"{source} [similarity.{group}]"
    probabilities = _numbers(table, where, "probabilities")
    if (len(probabilities) < 5 or any(
            b <= a for a, b in itertools.pairwise(probabilities))
            or probabilities[0] < 0.0 or probabilities[-1] > 1.0):
        raise _error(where, "probabilities", "must be at least 5 strictly increasing "
                                             "numbers in [0, 1]")
    if probabilities[0] > LOWEST_P or probabilities[-1] < HIGHEST_P:
        raise _error(where, "probabilities", f"must reach {LOWEST_P:g} and {HIGHEST_P:g} "
                                             "(the tails the simulator copies)")
    found = {kind: quantiles_from_table(table, where, kind, probabilities) for kind in KINDS}
    impostor, genuine = found["impostor"], found["genuine"]
    assert impostor is not None and genuine is not None  # required kinds never None
    if float(genuine.quantile(0.5)) <= float(impostor.quantile(0.5)):
        raise _error(where, "genuine", "median must exceed the impostor median")
    if status is None:
        status = calibration.get("status", "measured")
        if status not in ("measured", "provisional"):
            raise SimilarityError(f"similarity: {source}: [calibration] status must be "
                                  f"measured or provisional, not {status!r}")
    same, same_group = found["genuine_same_session"], ""
    pooled = tables.get(POOLED_GROUP)
    if same is None and group != POOLED_GROUP and isinstance(pooled, dict) \
            and pooled.get("genuine_same_session"):
        where_pooled = f"{source} [similarity.{POOLED_GROUP}]"
        same = quantiles_from_table(pooled, where_pooled, "genuine_same_session",
                                    _numbers(pooled, where_pooled, "probabilities"))
        same_group = POOLED_GROUP
    return SimilarityTable(impostor, genuine, same, group, source, status, same_group)


def load_similarity_file(path: Path, group: str | None = None) -> SimilarityTable:
    """A file `dispenser calibrate --faces ... --write-similarity` wrote (or any TOML file
    with `[similarity.<group>]` tables)."""
    card = read_toml(path, "similarity", SimilarityError)
    table = table_from_card(card, str(path), group)
    if table is None:
        raise SimilarityError(f"similarity: {path} has no [similarity.<group>] table "
                              "(write one with dispenser calibrate --faces DIR "
                              "--write-similarity FILE)")
    return table


def gaussian_table(genuine_mean: float, genuine_std: float, impostor_mean: float,
                   impostor_std: float, source: str, status: str) -> SimilarityTable:
    """A table with Gaussian quantiles from means and spreads (the provisional fallback:
    it has no measured tail, and every report says so)."""
    unit = NormalDist()
    probabilities = STANDARD_PROBABILITIES[1:-1]

    def quantiles(mean: float, std: float) -> Quantiles:
        values = tuple(min(max(mean + std * unit.inv_cdf(p), -1.0), 1.0)
                       for p in probabilities)
        return Quantiles(probabilities, values, 0)

    return SimilarityTable(quantiles(impostor_mean, impostor_std),
                           quantiles(genuine_mean, genuine_std), None, "", source, status)


def card_table(card: str, group: str | None = None) -> SimilarityTable | None:
    """Group `group` (default: the worst group) of the packaged model card `card`
    (without ".toml"); None when the card records no `[similarity.<group>]` table."""
    return table_from_card(read_card(card), f"model card {card}.toml", group)


def simulator_table(path: Path | None, group: str | None, card: str) -> SimilarityTable:
    """What the simulator's people copy: `path` (a calibrate file) if given, else the
    embedder card's worst group, else that embedder's clearly labelled provisional table
    (only dlib has one: any other card without tables is refused, as a table on another
    embedder's cosine scale would refuse or admit everyone)."""
    if path is not None:
        return load_similarity_file(path, group)
    table = card_table(card, group)
    if table is not None:
        return table
    if group is None and card in PROVISIONAL:
        return PROVISIONAL[card]
    wanted = f"[similarity.{group}]" if group is not None else "[similarity.<group>]"
    raise SimilarityError(f"similarity: model card {card}.toml has no {wanted} table; give "
                          "--similarity FILE (dispenser calibrate --faces DIR "
                          "--write-similarity FILE writes one)")


# The fallback when the embedder's card has no measured table. dlib reports 99.38% on LFW
# at Euclidean distance 0.6 between raw descriptors, whose norms are about 1.3-1.5
# (tests/data/dlib_resnet_golden.npz). With |x| ~ 1.37 a raw distance d maps to cosine
# 1 - d^2 / (2 |x|^2): genuine LFW pairs (d mostly 0.3-0.5) give cosine ~0.96, unrelated
# faces (d ~0.85 +- 0.075) ~0.80 +- 0.035. Measured East Asian groups are far worse than
# this (docs/simulator.md): it is a placeholder, not a description of any crowd.
PROVISIONAL_DLIB = gaussian_table(
    0.96, 0.025, 0.80, 0.035,
    source="no measured table; Gaussian from dlib's published LFW results (impostor "
           "0.80 +- 0.035, genuine 0.96 +- 0.025), no measured tail",
    status="provisional")

# Provisional tables by model card, for a card that records no measured one (dlib's int8
# variant scores within 0.003 of its float32 model, so the same placeholder describes it).
PROVISIONAL = {card: PROVISIONAL_DLIB for card in ("dlib_face_recognition_resnet_model_v1",
                                                   "dlib_face_recognition_resnet_model_v1_int8")}

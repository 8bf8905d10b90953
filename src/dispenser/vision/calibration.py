"""Verification metrics from labelled similarity scores: ROC, TAR at fixed FAR, EER.

Why this exists: the match threshold decides two errors at once. Too low, and a stranger
who looks similar to someone served in the last minutes is refused paper (a false accept
of the "same person" hypothesis: the FAR here). Too high, and a repeat visitor gets paper
again (a false reject: 1 - TAR). The operator should set it on faces like their own
visitors' (`dispenser calibrate`), reading off the TAR they get for the FAR they accept.

Conventions (the store's rule, `dispenser.store.rule.is_match`; vision does not import the
store, so tests/vision/test_calibration.py checks these counts against it): two templates
are "the same person" when their cosine similarity is >= the threshold. With G genuine
(same person) and I impostor (different people) scores:

    FAR(t) = #{impostor >= t} / I        TAR(t) = #{genuine >= t} / G

`threshold_at_far(target)` is the lowest threshold whose FAR does not exceed the target,
i.e. it lets through at most floor(target * I) impostor pairs. When I < 1 / target the
target cannot be measured with this data (even one false accept is more than the target
allows); the result says so (`resolved = False`) instead of pretending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class OperatingPoint:
    """One threshold and the rates it gives on the calibration data."""

    threshold: float
    far: float
    tar: float
    far_target: float | None = None
    resolved: bool = True


@dataclass(frozen=True)
class Roc:
    """The ROC as arrays over every distinct score, thresholds descending."""

    thresholds: FloatArray
    far: FloatArray
    tar: FloatArray


def _scores(values: npt.ArrayLike, what: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"no {what} scores: need at least one")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} scores contain non-finite values")
    return arr


def rates_at(genuine: npt.ArrayLike, impostor: npt.ArrayLike,
             thresholds: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(FAR, TAR) at each threshold, with the >= convention, vectorised by sorting."""
    g = np.sort(_scores(genuine, "genuine"))
    i = np.sort(_scores(impostor, "impostor"))
    t = np.asarray(thresholds, dtype=np.float64)
    far = (i.size - np.searchsorted(i, t, side="left")) / i.size
    tar = (g.size - np.searchsorted(g, t, side="left")) / g.size
    return far.astype(np.float64), tar.astype(np.float64)


def roc(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> Roc:
    """FAR and TAR at every distinct score (plus one above the highest, where both are 0)."""
    g, i = _scores(genuine, "genuine"), _scores(impostor, "impostor")
    distinct = np.unique(np.concatenate([g, i]))[::-1]
    thresholds = np.concatenate([[np.nextafter(distinct[0], np.inf)], distinct])
    far, tar = rates_at(g, i, thresholds)
    return Roc(thresholds=thresholds, far=far, tar=tar)


def threshold_at_far(genuine: npt.ArrayLike, impostor: npt.ArrayLike,
                     far_target: float) -> OperatingPoint:
    """The lowest threshold with FAR <= far_target, and the TAR it gives."""
    if not 0.0 < far_target < 1.0:
        raise ValueError(f"FAR target must be between 0 and 1, got {far_target}")
    g, i = _scores(genuine, "genuine"), _scores(impostor, "impostor")
    allowed = math.floor(far_target * i.size + 1e-9)
    ranked = np.sort(i)[::-1]
    if allowed >= i.size:
        threshold = float(min(g.min(), i.min()))
    else:
        # Strictly above the (allowed+1)-th highest impostor: at most `allowed` are >= it.
        threshold = float(np.nextafter(ranked[allowed], np.inf))
    far, tar = rates_at(g, i, [threshold])
    return OperatingPoint(threshold=threshold, far=float(far[0]), tar=float(tar[0]),
                          far_target=far_target, resolved=i.size * far_target >= 1.0)


def equal_error_rate(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> tuple[float, float]:
    """(EER, threshold): the distinct-score threshold where FAR and FRR = 1 - TAR are
    closest; the EER is their mean there."""
    curve = roc(genuine, impostor)
    frr = 1.0 - curve.tar
    best = int(np.argmin(np.abs(curve.far - frr)))
    return float((curve.far[best] + frr[best]) / 2), float(curve.thresholds[best])


@dataclass(frozen=True)
class CalibrationReport:
    """Everything `dispenser calibrate` reports about a set of scores."""

    genuine_pairs: int
    impostor_pairs: int
    eer: float
    eer_threshold: float
    at_far: tuple[OperatingPoint, ...]
    roc: Roc


FAR_TARGETS = (0.01, 0.001, 0.0001)


def calibrate(genuine: npt.ArrayLike, impostor: npt.ArrayLike,
              far_targets: tuple[float, ...] = FAR_TARGETS) -> CalibrationReport:
    """ROC, EER and the operating points at each FAR target."""
    g, i = _scores(genuine, "genuine"), _scores(impostor, "impostor")
    eer, eer_t = equal_error_rate(g, i)
    return CalibrationReport(
        genuine_pairs=int(g.size), impostor_pairs=int(i.size), eer=eer, eer_threshold=eer_t,
        at_far=tuple(threshold_at_far(g, i, f) for f in far_targets), roc=roc(g, i))

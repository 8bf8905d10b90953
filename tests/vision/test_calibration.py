"""Verification metrics on synthetic scores whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from dispenser.store.rule import is_match
from dispenser.vision.calibration import (
    calibrate,
    equal_error_rate,
    rates_at,
    roc,
    threshold_at_far,
)


def test_rates_use_at_or_above_like_the_store() -> None:
    far, tar = rates_at([0.5, 0.9], [0.1, 0.5], [0.5, 0.50001, 1.0])
    assert far.tolist() == [0.5, 0.0, 0.0]
    assert tar.tolist() == [1.0, 0.5, 0.0]


def test_rates_count_what_the_match_rule_calls_the_same_person() -> None:
    """calibration cannot import the store (vision and store stay apart), so its vectorised
    counts are checked against `is_match` itself, ties on the threshold included."""
    rng = np.random.default_rng(0)
    genuine = np.round(rng.uniform(0.7, 1.0, 300), 2)   # rounded: many scores tie
    impostor = np.round(rng.uniform(0.5, 0.95, 300), 2)
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    far, tar = rates_at(genuine, impostor, thresholds)
    for t, f, g in zip(thresholds, far, tar, strict=True):
        assert f == sum(is_match(s, t) for s in impostor) / impostor.size
        assert g == sum(is_match(s, t) for s in genuine) / genuine.size
    point = threshold_at_far(genuine, impostor, 0.05)
    assert sum(is_match(s, point.threshold) for s in impostor) <= 0.05 * impostor.size


def test_separable_scores() -> None:
    genuine, impostor = [0.9, 0.95, 0.99], [0.1, 0.2, 0.3, 0.4]
    eer, threshold = equal_error_rate(genuine, impostor)
    assert eer == 0.0 and 0.4 < threshold <= 0.9
    point = threshold_at_far(genuine, impostor, 0.01)
    assert point.far == 0.0 and point.tar == 1.0 and 0.4 < point.threshold <= 0.9
    assert not point.resolved  # 4 impostor pairs cannot resolve a 1 % FAR


def test_threshold_at_far_allows_exactly_floor_of_target_false_accepts() -> None:
    impostor = np.arange(1000) / 1000.0          # 0.000 ... 0.999
    genuine = np.array([0.995, 0.9985, 0.5])
    point = threshold_at_far(genuine, impostor, 0.01)
    # 10 impostors may pass: 0.990 ... 0.999; the 11th highest (0.989) must not.
    assert point.far == pytest.approx(0.01) and point.resolved
    assert 0.989 < point.threshold <= 0.990
    assert point.tar == pytest.approx(2 / 3)
    strict = threshold_at_far(genuine, impostor, 0.001)
    assert strict.far == pytest.approx(0.001) and 0.998 < strict.threshold <= 0.999
    assert strict.tar == pytest.approx(1 / 3)  # only 0.9985 is above 0.998


def test_ties_never_push_far_over_the_target() -> None:
    impostor = [0.7] * 50 + [0.1] * 950
    point = threshold_at_far([0.8, 0.6], impostor, 0.01)
    assert point.far == 0.0 and point.threshold > 0.7 and point.tar == 0.5


def test_eer_of_known_overlap() -> None:
    # Genuine uniform on 0.5..1.0, impostor uniform on 0.0..0.6 (100 each): the curves
    # cross at t = 0.55, where 10 % of each side is wrong.
    genuine = 0.5 + (np.arange(100) + 0.5) / 200
    impostor = 0.6 * (np.arange(100) + 0.5) / 100
    eer, threshold = equal_error_rate(genuine, impostor)
    assert eer == pytest.approx(0.085, abs=0.02)
    assert threshold == pytest.approx(0.55, abs=0.02)


def test_roc_is_monotone_and_spans_zero_to_one() -> None:
    rng = np.random.default_rng(7)
    curve = roc(rng.normal(0.8, 0.05, 300), rng.normal(0.5, 0.1, 3000))
    assert (np.diff(curve.thresholds) < 0).all()
    assert (np.diff(curve.far) >= 0).all() and (np.diff(curve.tar) >= 0).all()
    assert curve.far[0] == curve.tar[0] == 0.0 and curve.far[-1] == curve.tar[-1] == 1.0


def test_calibrate_report_on_gaussian_scores() -> None:
    rng = np.random.default_rng(11)
    genuine, impostor = rng.normal(0.8, 0.05, 2000), rng.normal(0.5, 0.1, 20000)
    report = calibrate(genuine, impostor)
    assert (report.genuine_pairs, report.impostor_pairs) == (2000, 20000)
    thresholds = [p.threshold for p in report.at_far]
    assert thresholds == sorted(thresholds)  # a lower FAR needs a higher threshold
    tars = [p.tar for p in report.at_far]
    assert tars == sorted(tars, reverse=True)
    assert [p.resolved for p in report.at_far] == [True, True, True]
    # Analytic: FAR 1 % at 0.5 + 2.326 * 0.1 = 0.733.
    assert report.at_far[0].threshold == pytest.approx(0.733, abs=0.01)
    assert 0.0 < report.eer < 0.05


@pytest.mark.parametrize(("genuine", "impostor"), [([], [0.1]), ([0.9], []),
                                                   ([float("nan")], [0.1])])
def test_unusable_scores_are_refused(genuine: list[float], impostor: list[float]) -> None:
    with pytest.raises(ValueError):
        calibrate(genuine, impostor)


def test_far_target_must_be_a_rate() -> None:
    with pytest.raises(ValueError):
        threshold_at_far([0.9], [0.1], 0.0)

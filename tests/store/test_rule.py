"""The decision rule (dispenser.store.rule): thresholds derived from the live count and a
card's impostor tail. Property tests over random tails and counts, plus the card parsing
and the fallback for a card without calibration."""

from __future__ import annotations

import dataclasses
import decimal
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispenser.config import MatchSettings, Settings, VisionSettings
from dispenser.errors import DispenserError
from dispenser.store import rule as rule_module
from dispenser.store.rule import (
    ImpostorTail,
    MatchRule,
    is_match,
    likely_threshold_for,
    rule_for,
    threshold_for,
)
from dispenser.store.rule_table import threshold_table

# The example [calibration] table of the calibration format (an SFace-like tail).
EXAMPLE = {
    "status": "measured", "measured_with": "test", "worst_group": "kpop",
    "tail_cosine": [0.30, 0.35, 0.40, 0.45], "tail_far": [1.0e-2, 3.0e-3, 8.0e-4, 2.0e-4],
    "tail_decades_per_0_1": 1.5, "floor": 0.40, "ceiling": 0.95,
}


def example_tail(**changes: Any) -> ImpostorTail:
    return ImpostorTail.from_table({**EXAMPLE, **changes}, "test_card")


def calibrated(**match: Any) -> MatchRule:
    m = MatchSettings(**match)
    return MatchRule(example_tail(), max_false_refusal=m.max_false_refusal,
                     max_false_short=m.max_false_short, threshold=m.threshold,
                     likely_threshold=m.likely_threshold)


@st.composite
def tails(draw: st.DrawFn) -> ImpostorTail:
    """Random valid tails: increasing cosines, decreasing rates, floor <= ceiling."""
    n = draw(st.integers(1, 6))
    start = draw(st.floats(-0.5, 0.7))
    steps = draw(st.lists(st.floats(0.005, 0.05), min_size=n - 1, max_size=n - 1))
    cosine = [start]
    for s in steps:
        cosine.append(cosine[-1] + s)
    first = draw(st.floats(-3.0, 0.0))
    drops = draw(st.lists(st.floats(0.05, 1.5), min_size=n - 1, max_size=n - 1))
    logs = [first]
    for d in drops:
        logs.append(logs[-1] - d)
    floor = draw(st.floats(-1.0, 0.9))
    ceiling = draw(st.floats(floor, 1.0))
    return ImpostorTail.from_table({
        "status": "measured", "worst_group": "g", "tail_cosine": cosine,
        "tail_far": [10.0 ** x for x in logs],
        "tail_decades_per_0_1": draw(st.floats(0.2, 5.0)), "floor": floor,
        "ceiling": ceiling}, "random")


counts = st.integers(0, 100_000)
targets = st.floats(1e-6, 0.1)


def independent_target(p: float, n: int) -> float:
    """1 - (1 - p)^(1/N) in 50-digit decimal arithmetic (the module uses expm1/log1p; the
    naive float formula loses 8 digits when p is 1e-6)."""
    with decimal.localcontext(decimal.Context(prec=50)):
        one = decimal.Decimal(1)
        return float(one - (one - decimal.Decimal(p)) ** (one / max(n, 1)))


@settings(max_examples=300, deadline=None)
@given(tail=tails(), p=targets, a=counts, b=counts)
def test_threshold_never_falls_as_the_live_count_rises(tail: ImpostorTail, p: float, a: int,
                                                      b: int) -> None:
    r = MatchRule(tail, max_false_refusal=p, max_false_short=max(p, 0.02))
    lo, hi = sorted((a, b))
    assert r.certain(lo) <= r.certain(hi)
    assert r.likely(lo) <= r.likely(hi)


@settings(max_examples=300, deadline=None)
@given(tail=tails(), p=targets, q=st.floats(0.0, 0.4), n=counts)
def test_thresholds_stay_between_floor_and_ceiling_and_likely_below_certain(
        tail: ImpostorTail, p: float, q: float, n: int) -> None:
    r = MatchRule(tail, max_false_refusal=p, max_false_short=min(p + q, 0.5))
    likely, certain = r.thresholds(n)
    assert tail.floor <= likely <= certain <= tail.ceiling


@settings(max_examples=300, deadline=None)
@given(tail=tails(), p=targets, n=counts)
def test_the_threshold_is_the_smallest_cosine_meeting_the_per_visit_target(
        tail: ImpostorTail, p: float, n: int) -> None:
    t = MatchRule(tail, max_false_refusal=p, max_false_short=0.5).certain(n)
    f = independent_target(p, n)
    if t < tail.ceiling:  # at the ceiling the target may be out of reach
        assert tail.far_at(t) <= f * (1 + 1e-9)
    if t > tail.floor:    # at the floor a smaller cosine may meet it too
        assert tail.far_at(t - 1e-7) > f


@settings(max_examples=100, deadline=None)
@given(n=counts, threshold=st.floats(0.4, 0.99), likely=st.floats(0.4, 0.99))
def test_overrides_are_respected(n: int, threshold: float, likely: float) -> None:
    r = calibrated(threshold=threshold)
    assert r.certain(n) == threshold
    assert r.likely(n) <= threshold
    both = calibrated(threshold=max(threshold, likely), likely_threshold=min(threshold, likely))
    assert both.thresholds(n) == (min(threshold, likely), max(threshold, likely))


def test_the_example_tail_by_hand() -> None:
    tail = example_tail()
    # Interpolation between the points is linear in log10(far).
    assert tail.far_at(0.325) == pytest.approx(math.sqrt(1e-2 * 3e-3))
    # Beyond the last point: 1.5 decades per +0.1.
    assert tail.far_at(0.55) == pytest.approx(2e-4 * 10 ** -1.5)
    # Below the first point: the first point's rate.
    assert tail.far_at(0.0) == 1e-2
    r = MatchRule(tail)
    # N = 60, p = 0.001: f = 1.67e-5, 1.08 decades past 2e-4 -> 0.45 + 0.072.
    f = independent_target(0.001, 60)
    assert r.certain(60) == pytest.approx(0.45 + 0.1 * math.log10(2e-4 / f) / 1.5, abs=1e-9)
    # A generous target would allow cosines below the floor: the floor holds.
    assert MatchRule(tail, max_false_refusal=0.1, max_false_short=0.1).certain(1) == 0.40


def test_the_rule_uses_the_live_count() -> None:
    """Invariant 8 depends on this: with more live templates the bar to refuse is higher."""
    r = calibrated()
    assert r.certain(1) < r.certain(20) < r.certain(60) < r.certain(200)
    assert r.likely(1) < r.likely(60) < r.certain(60)


def test_is_match_is_at_or_above() -> None:
    assert is_match(0.5, 0.5) and is_match(0.51, 0.5) and not is_match(0.49, 0.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "guessed"}, "[calibration] status must be one of measured, provisional"),
        ({"worst_group": ""}, "[calibration] worst_group must name the measured group"),
        ({"tail_cosine": [0.3, 0.3, 0.4, 0.45]}, "[calibration] tail_cosine must be strictly"),
        ({"tail_far": [1e-2, 3e-3, 3e-3, 1e-4]}, "[calibration] tail_far must be strictly"),
        ({"tail_far": [1e-2, 3e-3]}, "[calibration] tail_far has 2 values, tail_cosine 4"),
        ({"tail_far": [1, 0, -1, -2]}, "[calibration] tail_far must be strictly decreasing"),
        ({"tail_cosine": "0.3"}, "[calibration] tail_cosine must be a non-empty list"),
        ({"tail_decades_per_0_1": 0}, "[calibration] tail_decades_per_0_1 must be > 0"),
        ({"tail_decades_per_0_1": True}, "[calibration] tail_decades_per_0_1 must be a"),
        ({"floor": 0.96}, "[calibration] floor and ceiling must satisfy"),
    ],
)
def test_bad_calibration_is_one_line_naming_card_and_key(change: dict[str, Any],
                                                         message: str) -> None:
    with pytest.raises(DispenserError) as info:
        example_tail(**change)
    assert str(info.value).startswith("model card test_card.toml: ")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_override_below_the_card_floor_is_refused() -> None:
    with pytest.raises(DispenserError, match=r"^config: match.threshold = 0.093 is below the "
                                             r"floor 0.4 of model card test_card.toml"):
        calibrated(threshold=0.093)
    with pytest.raises(DispenserError, match=r"^config: match.likely_threshold = 0.2 "):
        calibrated(likely_threshold=0.2)


def test_a_fixed_rule_has_no_short_band_unless_asked() -> None:
    assert MatchRule.fixed(0.93).thresholds(500) == (0.93, 0.93)
    assert MatchRule.fixed(0.93, likely=0.9).thresholds(0) == (0.9, 0.93)
    with pytest.raises(DispenserError, match=r"match\.threshold must be set"):
        MatchRule(tail=None)


def test_a_card_without_calibration_falls_back_to_its_provisional_threshold() -> None:
    """The shipped dlib card (selectable, for comparison) has no [calibration] table: its
    [threshold] cosine (0.93) is the fixed rule, and the start log line says so."""
    assert rule_module.card_tail("dlib_face_recognition_resnet_model_v1") is None
    s = Settings(vision=VisionSettings(embedder="dlib"))
    r = rule_for(s)
    assert r.provisional and r.thresholds(1) == r.thresholds(500) == (0.93, 0.93)
    assert "no [calibration]" in r.describe() and "\n" not in r.describe()
    assert threshold_for(60, s) == likely_threshold_for(60, s) == 0.93
    fixed = dataclasses.replace(s, match=MatchSettings(threshold=0.95))
    assert threshold_for(60, fixed) == 0.95 and not rule_for(fixed).provisional


def test_the_packaged_card_is_read_as_data_and_cached() -> None:
    card = "dlib_face_recognition_resnet_model_v1"
    assert rule_module.card_tail(card) is rule_module.card_tail(card)


def test_a_card_with_calibration_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rule_module, "read_card", lambda card: {"calibration": EXAMPLE})
    rule_module.card_tail.cache_clear()
    rule_module._rule.cache_clear()
    try:
        s = Settings()
        assert threshold_for(60, s) == pytest.approx(calibrated().certain(60))
        assert likely_threshold_for(60, s) < threshold_for(60, s)
        assert "measured impostor tail of group 'kpop'" in rule_for(s).describe()
    finally:
        rule_module.card_tail.cache_clear()
        rule_module._rule.cache_clear()


def test_the_table_command_prints_the_docs_table(repo_root: Path) -> None:
    """docs/vision.md carries the worked example computed from the shipped card; regenerate
    it with `python -m dispenser.store.rule_table` when the card changes."""
    run = subprocess.run([sys.executable, "-m", "dispenser.store.rule_table"],
                         check=True, capture_output=True, text=True)
    assert run.stdout.strip() == threshold_table(Settings()) and not run.stderr
    docs = (repo_root / "docs" / "vision.md").read_text(encoding="utf-8")
    begin, end = "<!-- rule-table: begin -->\n", "\n<!-- rule-table: end -->"
    assert begin in docs and end in docs, "docs/vision.md lost its rule table markers"
    shown = docs.split(begin, 1)[1].split(end, 1)[0]
    assert shown.strip() == threshold_table(Settings()), (
        "docs/vision.md's rule table is stale: regenerate it with "
        "`python -m dispenser.store.rule_table`")

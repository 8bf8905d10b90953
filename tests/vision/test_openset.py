"""Open-set figures (dispenser.vision.openset) on synthetic templates and scores."""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dispenser.store.rule import ImpostorTail as RuleTail
from dispenser.vision import openset


@given(st.floats(1e-9, 0.5), st.integers(1, 5000))
def test_per_visit_refusal_is_one_minus_the_chance_of_no_match(f: float, n: int) -> None:
    p = openset.per_visit_refusal(f, n)
    with decimal.localcontext() as ctx:  # the exact value, to 40 digits
        ctx.prec = 40
        exact = 1 - (1 - decimal.Decimal(f)) ** n
    assert p == pytest.approx(float(exact), rel=1e-9)
    assert openset.per_visit_refusal(f, n + 1) >= p
    assert openset.per_visit_refusal(f, 1) == pytest.approx(f)


def _unit(rows: np.ndarray) -> np.ndarray:
    out: np.ndarray = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return out


def test_pair_scores_counts_genuine_same_session_and_impostor_pairs() -> None:
    rng = np.random.default_rng(1)
    templates = _unit(rng.normal(size=(6, 16)))
    identities = ["a", "a", "a", "b", "b", "c"]
    sessions = ["s", "s", "", "s", "", "s"]
    scores = openset.pair_scores(templates, identities, sessions, np.ones(6, bool))
    assert scores.genuine.size == 3 + 1  # a: 3 pairs, b: 1 pair
    assert scores.same_session.size == 1  # a's first two share session "s"
    assert scores.impostor.size == 15 - 4
    expected = float(templates[0] @ templates[1])
    assert scores.same_session[0] == pytest.approx(expected)
    members = np.array([True, True, False, True, False, False])
    assert openset.pair_scores(templates, identities, sessions, members).impostor.size == 2


def test_crowd_figures_use_same_session_pairs_for_repeat_takes() -> None:
    scores = openset.Scores(genuine=np.array([0.2, 0.9]), same_session=np.array([0.8, 0.9]),
                            impostor=np.array([0.1] * 98 + [0.6, 0.7]))
    (crowd,) = openset.crowd_figures(scores, {10: (0.55, 0.65)})
    assert crowd["pairwise_far"] == pytest.approx(0.01)
    assert crowd["impostor_pairs_above"] == 1
    assert crowd["wrongful_refusal"] == pytest.approx(1 - 0.99 ** 10)
    assert crowd["short_ribbon"] == pytest.approx((1 - 0.98 ** 10) - (1 - 0.99 ** 10))
    assert crowd["repeat_caught"] == 1.0 and crowd["repeat_pairs_are_same_session"]


def _scores(rng: np.random.Generator, mean: float, spread: float, n: int) -> openset.Scores:
    return openset.Scores(genuine=np.array([0.8]), same_session=np.zeros(0),
                          impostor=rng.normal(mean, spread, n))


def test_worst_case_tail_follows_the_heaviest_group_and_is_a_valid_card_table() -> None:
    rng = np.random.default_rng(2)
    light = _scores(rng, 0.05, 0.08, 200_000)
    heavy = _scores(rng, 0.20, 0.10, 200_000)
    tail = openset.worst_case_tail({"light": light, "heavy": heavy})
    assert tail.worst_group == "heavy"
    assert all(b > a for a, b in zip(tail.cosine, tail.cosine[1:], strict=False))
    assert all(b < a for a, b in zip(tail.far, tail.far[1:], strict=False))
    for cosine, far in zip(tail.cosine, tail.far, strict=True):
        assert (heavy.impostor >= cosine).mean() <= far * 1.05  # within sampling error
        assert (light.impostor >= cosine).mean() <= far
    assert tail.decades_per_0_1 >= 0.1 and tail.floor >= tail.cosine[0]
    parsed = RuleTail.from_table(tail.table(), "test_card")
    assert parsed.far_at(tail.cosine[-1]) == pytest.approx(tail.far[-1])


def test_a_small_group_with_a_heavy_tail_lifts_the_deep_levels() -> None:
    """The big group alone measures down to 1e-5; the small, heavier group can only measure
    1e-3 but its extrapolated tail still raises the recorded cosine there."""
    rng = np.random.default_rng(3)
    big = _scores(rng, 0.05, 0.08, 2_000_000)
    small = _scores(rng, 0.25, 0.10, 20_000)
    alone = openset.worst_case_tail({"big": big})
    both = openset.worst_case_tail({"big": big, "small": small})
    deep = alone.far[-1]
    assert deep <= 1e-5 and deep in both.far
    assert both.cosine[both.far.index(deep)] > alone.cosine[-1]


def test_groups_too_small_for_a_tail_are_refused() -> None:
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match="too few identities"):
        openset.worst_case_tail({"tiny": _scores(rng, 0.1, 0.1, 500)})


def test_quantile_table_matches_the_probabilities() -> None:
    values = np.linspace(0.0, 1.0, 10_001)
    table = openset.quantile_table(values)
    assert len(table) == len(openset.QUANTILE_PROBABILITIES)
    assert table == pytest.approx(list(openset.QUANTILE_PROBABILITIES), abs=1e-4)
    assert math.isclose(table[0], 0.0) and openset.quantile_table(np.zeros(0)) == []


def test_an_embedder_whose_strangers_score_high_gets_its_floor_as_ceiling() -> None:
    """dlib's ResNet puts strangers near 0.9: its floor lies above the usual 0.95 ceiling,
    and the table must still be one the rule accepts."""
    rng = np.random.default_rng(5)
    crowded = openset.Scores(genuine=np.array([0.99]), same_session=np.zeros(0),
                             impostor=np.clip(rng.normal(0.93, 0.015, 300_000), -1, 1))
    tail = openset.worst_case_tail({"crowded": crowded})
    assert tail.floor > openset.CEILING and tail.ceiling == tail.floor
    assert RuleTail.from_table(tail.table(), "test_card").ceiling == tail.floor

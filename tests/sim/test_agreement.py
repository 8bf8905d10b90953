"""The simulator's wrongful-refusal figure agrees with `dispenser calibrate --faces` on
recorded statistics (tests/data/similarity_sface_like.toml, which says how to replace its
numbers with a real measurement): within a factor of 2 at N = 20 and 60 live templates."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from dispenser.sim.identities import (
    IdentityModel,
    Population,
    impostor_tail_counts,
    stranger_refusals,
)
from dispenser.sim.similarity import SimilarityTable, load_similarity_file

FIXTURE = Path(__file__).parent.parent / "data" / "similarity_sface_like.toml"
RECORDED = tomllib.loads(FIXTURE.read_text(encoding="utf-8"))["recorded"]
POINTS = list(zip(RECORDED["live"], RECORDED["threshold"],
                  RECORDED["per_visit_wrongful_refusal"], strict=True))


@pytest.fixture(scope="module")
def table() -> SimilarityTable:
    return load_similarity_file(FIXTURE)


@pytest.fixture(scope="module")
def population(table: SimilarityTable) -> Population:
    return Population(IdentityModel.fit(table), seed=11)


def _within_factor_2(value: float, recorded: float) -> bool:
    return recorded / 2 <= value <= 2 * recorded


@pytest.mark.parametrize(("live", "threshold", "recorded"), POINTS)
def test_the_recorded_figure_is_what_the_table_predicts(
        table: SimilarityTable, live: int, threshold: float, recorded: float) -> None:
    # calibrate's figure comes from the same pairs as the table: 1 - (1 - f)^N from the
    # table's share f at the threshold must land within a factor of 2 of it.
    assert _within_factor_2(table.per_visit_wrongful_refusal(threshold, live), recorded)


@pytest.mark.parametrize(("live", "threshold", "recorded"), POINTS)
def test_sampled_pairs_give_the_recorded_per_visit_figure(
        population: Population, live: int, threshold: float, recorded: float) -> None:
    # 4500 synthetic people, one visit each: 10 million pairs of different people.
    counts, pairs = impostor_tail_counts(population, 4500, np.array([threshold]),
                                         np.random.default_rng(3))
    assert counts[0] >= 30  # enough pairs above the threshold to mean something
    per_visit = 1.0 - (1.0 - counts[0] / pairs) ** live
    assert _within_factor_2(per_visit, recorded)


@pytest.mark.parametrize(("live", "threshold", "recorded"), POINTS)
def test_a_crowd_of_strangers_is_wrongly_refused_at_the_recorded_rate(
        population: Population, live: int, threshold: float, recorded: float) -> None:
    # Strangers each facing `live` templates of other people, until about 60 refusals
    # are expected: the count's own spread is then ~13 %, far inside the factor of 2.
    strangers = int(60 / recorded)
    refused = stranger_refusals(population, live, strangers, threshold,
                                np.random.default_rng([live, 7]))
    assert _within_factor_2(refused / strangers, recorded)

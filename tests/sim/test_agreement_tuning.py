"""The simulator agrees with `dispenser calibrate --faces` on recorded statistics
(tests/data/similarity_sface_tuning.toml, which says how to replace its numbers with a real
measurement): at the shipped rule's thresholds for N = 20 and 60 live templates, the
chance a stranger is wrongly refused within a factor of 2, the shorter ribbon within a
factor of 2, and the share of repeat-takes caught within 2 percentage points."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dispenser.sim.identities import (
    IdentityModel,
    Population,
    impostor_tail_counts,
    sample_similarities,
    strangers_matched,
)
from dispenser.sim.similarity import SimilarityTable, load_similarity_file
from dispenser.store.rule import ImpostorTail, MatchRule

FIXTURE = Path(__file__).parent.parent / "data" / "similarity_sface_tuning.toml"
DOCUMENT = tomllib.loads(FIXTURE.read_text(encoding="utf-8"))
CROWD: list[dict[str, Any]] = DOCUMENT["recorded"]["crowd"]
LIVE = [entry["live"] for entry in CROWD]


@pytest.fixture(scope="module")
def table() -> SimilarityTable:
    return load_similarity_file(FIXTURE, "all")


@pytest.fixture(scope="module")
def population(table: SimilarityTable) -> Population:
    return Population(IdentityModel.fit(table), seed=11)


def _within_factor_2(value: float, recorded: float) -> bool:
    return recorded / 2 <= value <= 2 * recorded


@pytest.mark.parametrize("entry", CROWD, ids=LIVE)
def test_the_recorded_thresholds_are_the_shipped_rules(entry: dict[str, Any]) -> None:
    # match.max_false_refusal / max_false_short at their defaults, on the recorded tail.
    rule = MatchRule(tail=ImpostorTail.from_table(DOCUMENT["calibration"], "fixture"))
    likely, certain = rule.thresholds(entry["live"])
    assert (likely, certain) == pytest.approx(
        (entry["likely_threshold"], entry["threshold"]), abs=1e-3)


@pytest.mark.parametrize("entry", CROWD, ids=LIVE)
def test_the_recorded_figures_are_what_the_table_predicts(
        table: SimilarityTable, entry: dict[str, Any]) -> None:
    # calibrate's figures come from the same pairs as the table: 1 - (1 - f)^N from the
    # table's share f at each threshold must land within a factor of 2 of them.
    live, likely, certain = entry["live"], entry["likely_threshold"], entry["threshold"]
    refused = table.per_visit_wrongful_refusal(certain, live)
    assert _within_factor_2(refused, entry["wrongful_refusal"])
    short = table.per_visit_wrongful_refusal(likely, live) - refused
    assert _within_factor_2(short, entry["short_ribbon"])


@pytest.mark.parametrize("entry", CROWD, ids=LIVE)
def test_sampled_pairs_give_the_recorded_wrongful_refusal(
        population: Population, entry: dict[str, Any]) -> None:
    # 4500 synthetic people, one visit each: 10 million pairs of different people.
    counts, pairs = impostor_tail_counts(population, 4500, np.array([entry["threshold"]]),
                                         np.random.default_rng(3))
    assert counts[0] >= 30  # enough pairs above the threshold to mean something
    per_visit = 1.0 - (1.0 - counts[0] / pairs) ** entry["live"]
    assert _within_factor_2(per_visit, entry["wrongful_refusal"])


@pytest.mark.parametrize("entry", CROWD, ids=LIVE)
def test_a_crowd_of_strangers_is_refused_and_shortened_at_the_recorded_rates(
        population: Population, entry: dict[str, Any]) -> None:
    # Strangers each facing `live` templates of other people, until about 60 refusals
    # are expected: the count's own spread is then ~13 %, far inside the factor of 2.
    strangers = int(60 / entry["wrongful_refusal"])
    likely_or_more, refused = strangers_matched(
        population, entry["live"], strangers,
        np.array([entry["likely_threshold"], entry["threshold"]]),
        np.random.default_rng([entry["live"], 7]))
    assert _within_factor_2(refused / strangers, entry["wrongful_refusal"])
    assert _within_factor_2((likely_or_more - refused) / strangers, entry["short_ribbon"])


@pytest.mark.parametrize("entry", CROWD, ids=LIVE)
def test_repeat_takers_are_caught_at_the_recorded_rate(
        population: Population, entry: dict[str, Any]) -> None:
    same_session = sample_similarities(population, 20_000,
                                       np.random.default_rng(5)).same_session
    caught = float(np.mean(same_session >= entry["threshold"]))
    assert caught == pytest.approx(entry["repeat_caught"], abs=0.02)

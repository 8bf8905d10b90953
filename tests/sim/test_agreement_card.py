"""The simulator against `dispenser calibrate --faces` on the shipped SFace card's real
tables: copying the worst group's table (kpop, the default) and the pooled one (all), its
synthetic strangers should be refused at the shipped rule's thresholds for N = 20 and 60
live templates within a factor of 2 of what calibrate measured on the tuning set
(tests/data/calibrate_sface_crowd.toml), and its repeat-takers caught within 2 points of
the recorded share.

Where calibrate found no impostor pair at the refusal threshold (kpop at N = 60: 0 of
57,509 pairs reach 0.603, so its recorded figure is 0, which no positive rate can match
within a factor), the comparison moves to the rule's other threshold for that N, the
shorter-ribbon one, where the recorded chance of being refused or shortened is
measurable."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dispenser.embedders import read_card
from dispenser.sim.identities import (
    IdentityModel,
    Population,
    impostor_tail_counts,
    sample_similarities,
    strangers_matched,
)
from dispenser.sim.similarity import SimilarityTable, card_table
from dispenser.store.rule import ImpostorTail, MatchRule

CARD = "face_recognition_sface_2021dec"
RECORDED = tomllib.loads((Path(__file__).parent.parent / "data"
                          / "calibrate_sface_crowd.toml").read_text(encoding="utf-8"))
GROUPS = ("kpop", "all")
CASES = [(group, entry) for group in GROUPS for entry in RECORDED["groups"][group]["crowd"]]
IDS = [f"{group}-N{entry['live']}" for group, entry in CASES]
@pytest.fixture(scope="module")
def tables() -> dict[str, SimilarityTable]:
    found = {group: card_table(CARD, group) for group in GROUPS}
    assert all(table is not None for table in found.values())
    return {group: table for group, table in found.items() if table is not None}


@pytest.fixture(scope="module")
def populations(tables: dict[str, SimilarityTable]) -> dict[str, Population]:
    return {group: Population(IdentityModel.fit(table), seed=11)
            for group, table in tables.items()}


def _compared(entry: dict[str, Any]) -> tuple[float, float]:
    """(threshold, recorded chance a stranger reaches it): the refusal threshold where
    calibrate counted impostor pairs at it, else the shorter-ribbon threshold."""
    if entry["impostor_pairs_above"] > 0:
        return entry["threshold"], entry["wrongful_refusal"]
    return entry["likely_threshold"], entry["wrongful_refusal"] + entry["short_ribbon"]


def _within_factor_2(value: float, recorded: float) -> bool:
    return recorded / 2 <= value <= 2 * recorded


def test_the_recorded_figures_come_from_the_cards_tables_and_rule() -> None:
    card = read_card(CARD)
    rule = MatchRule(tail=ImpostorTail.from_table(card["calibration"], CARD))
    assert card["calibration"]["worst_group"] == "kpop"
    for group, entry in CASES:
        recorded = RECORDED["groups"][group]
        assert card["similarity"][group]["impostor_pairs"] == recorded["impostor_pairs"]
        assert tuple(rule.thresholds(entry["live"])) == pytest.approx(
            (entry["likely_threshold"], entry["threshold"]), abs=1e-5)


@pytest.mark.parametrize(("group", "entry"), CASES, ids=IDS)
def test_the_cards_table_predicts_the_recorded_figure(
        tables: dict[str, SimilarityTable], group: str, entry: dict[str, Any]) -> None:
    # The table read at its plotting positions: kpop's refusal threshold at N = 20 lies
    # between its third and second highest impostor pairs.
    threshold, recorded = _compared(entry)
    predicted = tables[group].per_visit_wrongful_refusal(threshold, entry["live"])
    assert _within_factor_2(predicted, recorded)


@pytest.mark.parametrize(("group", "entry"), CASES, ids=IDS)
def test_synthetic_pairs_refuse_strangers_at_the_recorded_rate(
        populations: dict[str, Population], group: str, entry: dict[str, Any]) -> None:
    # As calibrate counts: the share f of impostor pairs at or above the threshold, over
    # all pairs of enough synthetic people (one visit each) to hold about 100 such
    # pairs, then 1 - (1 - f)^N.
    threshold, recorded = _compared(entry)
    live = entry["live"]
    pairwise = -math.expm1(math.log1p(-recorded) / live)
    people = min(int(math.sqrt(200 / pairwise)) + 1, 6000)
    counts, pairs = impostor_tail_counts(populations[group], people, np.array([threshold]),
                                         np.random.default_rng([live, 3]))
    assert counts[0] >= 40  # enough pairs above the threshold to mean something
    per_visit = -math.expm1(live * math.log1p(-counts[0] / pairs))
    assert _within_factor_2(per_visit, recorded)


@pytest.mark.slow
@pytest.mark.parametrize(("group", "entry"), CASES, ids=IDS)
def test_a_crowd_of_strangers_is_refused_at_the_recorded_rate(
        populations: dict[str, Population], group: str, entry: dict[str, Any]) -> None:
    # Strangers each facing `live` templates of other synthetic people, until about 60
    # refusals are expected: the count's own spread is then ~13 %.
    threshold, recorded = _compared(entry)
    strangers = int(60 / recorded)
    matched = strangers_matched(populations[group], entry["live"], strangers,
                                np.array([threshold]),
                                np.random.default_rng([entry["live"], 7]))
    assert _within_factor_2(matched[0] / strangers, recorded)


@pytest.mark.parametrize(("group", "entry"), CASES, ids=IDS)
def test_repeat_takers_are_caught_at_the_recorded_rate(
        tables: dict[str, SimilarityTable], populations: dict[str, Population],
        group: str, entry: dict[str, Any]) -> None:
    # A repeat-taker's two visits are one session. kpop measured no same-session pairs,
    # so the card gives it the pooled group's same-session table; the recorded share to
    # compare with is that group's, which calibrate measured on same-session pairs.
    source = tables[group].same_session_group or group
    recorded = next(e for e in RECORDED["groups"][source]["crowd"]
                    if e["live"] == entry["live"])
    assert recorded["repeat_pairs_are_same_session"]
    same_session = sample_similarities(populations[group], 20_000,
                                       np.random.default_rng(5)).same_session
    caught = float(np.mean(same_session >= entry["threshold"]))
    assert caught == pytest.approx(recorded["repeat_caught"], abs=0.02)

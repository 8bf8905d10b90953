"""Synthetic identities: the fitted model reproduces the target similarity statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dispenser.errors import DispenserError
from dispenser.sim.identities import (
    PROVISIONAL_DLIB,
    IdentityModel,
    Population,
    SimilarityStats,
    embedder_stats,
    sample_similarities,
    stats_from_card,
)


@pytest.mark.parametrize("target", [
    PROVISIONAL_DLIB,
    SimilarityStats(0.90, 0.04, 0.50, 0.08, source="a weaker embedder"),
    SimilarityStats(0.97, 0.015, 0.70, 0.05, source="a tighter embedder"),
], ids=["dlib-provisional", "weak", "tight"])
def test_sampled_templates_match_the_target_statistics(target: SimilarityStats) -> None:
    model = IdentityModel.fit(target)
    genuine, impostor = sample_similarities(Population(model, seed=7), 4000,
                                            np.random.default_rng(11))
    assert genuine.mean() == pytest.approx(target.genuine_mean, abs=0.005)
    assert impostor.mean() == pytest.approx(target.impostor_mean, abs=0.005)
    assert genuine.std() == pytest.approx(target.genuine_std, rel=0.15)
    assert impostor.std() == pytest.approx(target.impostor_std, rel=0.15)


def test_different_people_are_far_from_orthogonal_like_real_face_embeddings() -> None:
    # Random unit vectors would give impostor cosine ~ N(0, 1/128): far too separable.
    _, impostor = sample_similarities(Population(IdentityModel.fit(PROVISIONAL_DLIB), 3),
                                      3000, np.random.default_rng(5))
    assert impostor.mean() > 0.7
    # ... and spread like a low-dimensional face manifold, not an isotropic 128-d cloud
    # around the shared direction (which would give std (1 - mean) / sqrt(128)).
    assert impostor.std() > 1.5 * (1 - impostor.mean()) / np.sqrt(128)


def test_templates_are_unit_float32_and_a_person_does_not_depend_on_call_order() -> None:
    model = IdentityModel.fit(PROVISIONAL_DLIB)
    late = Population(model, seed=1).templates(np.array([300, 3]), np.random.default_rng(2))
    early = Population(model, seed=1)
    early.templates(np.array([0]), np.random.default_rng(9))
    again = early.templates(np.array([300, 3]), np.random.default_rng(2))
    assert late.dtype == np.float32 and late.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(late, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(late, again)
    other_seed = Population(model, seed=2).templates(np.array([300, 3]),
                                                      np.random.default_rng(2))
    assert not np.array_equal(late, other_seed)


def test_two_visits_of_one_person_are_closer_than_two_people() -> None:
    population = Population(IdentityModel.fit(PROVISIONAL_DLIB), seed=4)
    rng = np.random.default_rng(0)
    a1, a2, b = population.templates(np.array([5, 5, 6]), rng)
    assert float(a1 @ a2) > float(a1 @ b)
    t1, t2, u = (population.typical_template(p, rng) for p in (5, 5, 6))
    assert float(t1 @ t2) > 0.95 > float(t1 @ u)  # a typical pair: median genuine ~0.96
    with pytest.raises(ValueError, match="start at 0"):
        population.typical_template(-1, rng)


def test_model_card_similarity_table_is_used_when_present() -> None:
    card = {"similarity": {"genuine_mean": 0.95, "genuine_std": 0.03, "impostor_mean": 0.75,
                           "impostor_std": 0.04, "pairs": "test pairs"}}
    stats = stats_from_card(card)
    assert stats is not None and stats.genuine_mean == 0.95
    assert stats.source.startswith("measured") and "test pairs" in stats.source
    assert stats_from_card({}) is None
    assert stats_from_card({"similarity": {"genuine_mean": 0.9}}) is None
    assert embedder_stats().source  # provisional or measured, always says which


def test_inconsistent_statistics_are_refused_with_one_line() -> None:
    with pytest.raises(DispenserError, match="impostor_mean < genuine_mean"):
        SimilarityStats(0.5, 0.02, 0.8, 0.03, source="swapped")
    with pytest.raises(DispenserError, match="must be > 0"):
        SimilarityStats(0.9, 0.0, 0.5, 0.03, source="no spread")


def test_an_operators_own_statistics_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("[similarity]\ngenuine_mean = 0.97\ngenuine_std = 0.02\n"
                    "impostor_mean = 0.75\nimpostor_std = 0.04\npairs = \"600 staff pairs\"\n")
    stats = embedder_stats(path)
    assert (stats.genuine_mean, stats.impostor_std) == (0.97, 0.04)
    assert stats.source == f"measured: {path} (600 staff pairs)"
    path.write_text("[similarity]\ngenuine_mean = 0.97\n")
    with pytest.raises(DispenserError, match=r"needs a \[similarity\] table"):
        embedder_stats(path)
    with pytest.raises(DispenserError, match="file not found"):
        embedder_stats(tmp_path / "absent.toml")

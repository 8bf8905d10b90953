"""Synthetic identities: sampled templates reproduce a measured similarity table, tail
included, and the table files are read with one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from dispenser.config import Settings
from dispenser.embedders import embedder_card
from dispenser.errors import DispenserError
from dispenser.sim import similarity
from dispenser.sim.identities import (
    BRANCHING,
    IdentityModel,
    Population,
    impostor_tail_counts,
    own_cosines,
    sample_similarities,
    shared_levels,
)
from dispenser.sim.similarity import (
    PROVISIONAL_DLIB,
    Quantiles,
    SimilarityTable,
    load_similarity_file,
    simulator_table,
)

FIXTURE = Path(__file__).parent.parent / "data" / "similarity_sface_like.toml"


@pytest.fixture(scope="module")
def sface_like() -> SimilarityTable:
    return load_similarity_file(FIXTURE)


def _ks(sample: np.ndarray, table: Quantiles) -> float:
    """Kolmogorov-Smirnov distance between a sample and the table's interpolated CDF,
    read at the table's interior probabilities."""
    p = np.array([x for x in table.probabilities if 0.0 < x < 1.0])
    return float(np.max(np.abs(np.searchsorted(np.sort(sample), table.quantile(p))
                               / len(sample) - p)))


def test_sampled_templates_reproduce_the_measured_distributions(
        sface_like: SimilarityTable) -> None:
    model = IdentityModel.fit(sface_like)
    sampled = sample_similarities(Population(model, seed=7), 20_000, np.random.default_rng(11))
    assert _ks(sampled.impostor, sface_like.impostor) < 0.02
    assert _ks(sampled.genuine, sface_like.genuine) < 0.03
    same = sface_like.genuine_same_session
    assert same is not None
    # Repeat-takers (same session): the whole distribution, lower tail included.
    assert _ks(sampled.same_session, same) < 0.03
    assert np.quantile(sampled.same_session, 0.05) == pytest.approx(
        float(same.quantile(0.05)), abs=0.02)
    assert np.quantile(sampled.genuine, 0.05) == pytest.approx(
        float(sface_like.genuine.quantile(0.05)), abs=0.02)


def test_the_impostor_tail_matches_down_to_one_pair_in_ten_thousand(
        sface_like: SimilarityTable) -> None:
    # The measured p99, p99.9 and p99.99 cosines: the share of 8 million sampled pairs
    # of different people at or above each must be the table's share (within 35 %: the
    # look-alike centres of one seeded population move the deepest share by up to ~30 %).
    population = Population(IdentityModel.fit(sface_like), seed=5)
    cosines = sface_like.impostor.quantile(np.array([0.99, 0.999, 0.9999]))
    counts, pairs = impostor_tail_counts(population, 4000, cosines, np.random.default_rng(2))
    np.testing.assert_allclose(counts / pairs, [1e-2, 1e-3, 1e-4], rtol=0.35)


def test_a_heavier_tail_is_reproduced_not_a_gaussian_one(sface_like: SimilarityTable) -> None:
    # Same bulk, 5 and 15 times as many pairs at or above 0.47 and 0.57, the tail falling
    # a decade per 0.1 of cosine as the pooled tuning set's does: the look-alike levels
    # must carry it.
    heavy = list(sface_like.impostor.values)
    heavy[-4:] = [0.37, 0.47, 0.57, 0.65]
    table = SimilarityTable(Quantiles(sface_like.impostor.probabilities, tuple(heavy),
                                      200_000), sface_like.genuine,
                            sface_like.genuine_same_session, "heavy", "test", "measured")
    model = IdentityModel.fit(table)
    assert model.lookalike[-1] > model.lookalike[0] > 0.0
    counts, pairs = impostor_tail_counts(Population(model, seed=5), 4000,
                                         np.array([0.47, 0.57]), np.random.default_rng(2))
    np.testing.assert_allclose(counts / pairs, [1e-3, 1e-4], rtol=0.35)
    light = impostor_tail_counts(Population(IdentityModel.fit(sface_like), seed=5), 4000,
                                 np.array([0.47, 0.57]), np.random.default_rng(2))[0]
    assert np.all(counts > 3 * light)


def test_people_sharing_k_look_alike_levels_are_w_k_closer(
        sface_like: SimilarityTable) -> None:
    # Identities (before noise) of pairs made to share exactly k levels: cosine a2 +
    # (1 - a2) W_k on average, W_0 = 0; random people share level 1 one time in five.
    model = IdentityModel.fit(sface_like)
    population = Population(model, seed=3)
    rng = np.random.default_rng(0)
    closeness = (0.0, *model.lookalike)
    for k in range(len(BRANCHING) + 1):
        first, second = population.pairs_sharing(k, 300, rng)
        assert np.all(shared_levels(first.leaf, second.leaf) == k)
        cosine = np.einsum("ij,ij->i", first.identity, second.identity)
        expected = model.mean_share + (1 - model.mean_share) * closeness[k]
        assert float(np.mean(cosine)) == pytest.approx(expected, abs=0.02)
    people = population.fresh_people(4000, rng)
    shared = shared_levels(people.leaf[:2000], people.leaf[2000:])
    assert float(np.mean(shared >= 1)) == pytest.approx(0.2, abs=0.03)


@pytest.mark.parametrize("d", [5.0, 20.0, 90.0])
def test_the_own_part_law_is_the_cosine_of_random_directions(d: float) -> None:
    # The analytic law's quadrature against sampled cosines of unit vectors in d
    # dimensions: same spread, same (light) tail.
    rng = np.random.default_rng(1)
    a, b = (rng.standard_normal((200_000, int(d))) for _ in range(2))
    sampled = np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    x, weight = own_cosines(d)
    assert float(np.sum(weight * x * x)) == pytest.approx(1.0 / d, rel=0.03)
    beyond = 3.0 / np.sqrt(d)
    assert float(np.sum(weight[x >= beyond])) == pytest.approx(
        float(np.mean(sampled >= beyond)), rel=0.25, abs=2e-4)


def test_templates_are_unit_float32_and_a_person_does_not_depend_on_call_order(
        sface_like: SimilarityTable) -> None:
    model = IdentityModel.fit(sface_like)
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


def test_typical_scans_of_one_person_have_the_median_same_session_similarity(
        sface_like: SimilarityTable) -> None:
    population = Population(IdentityModel.fit(sface_like), seed=4)
    rng = np.random.default_rng(0)
    same = sface_like.genuine_same_session
    assert same is not None
    pairs = [(population.typical_template(p, rng), population.typical_template(p, rng))
             for p in range(200)]
    median = float(np.median([float(a @ b) for a, b in pairs]))
    assert median == pytest.approx(float(same.quantile(0.5)), abs=0.03)
    with pytest.raises(ValueError, match="start at 0"):
        population.typical_template(-1, rng)


def test_the_provisional_fallback_is_labelled_and_still_fits() -> None:
    assert PROVISIONAL_DLIB.status == "provisional"
    assert PROVISIONAL_DLIB.describe().startswith("provisional: no measured table")
    sampled = sample_similarities(Population(IdentityModel.fit(PROVISIONAL_DLIB), seed=3),
                                  5000, np.random.default_rng(5))
    assert np.median(sampled.impostor) == pytest.approx(0.80, abs=0.01)
    assert np.median(sampled.genuine) == pytest.approx(0.96, abs=0.01)


def test_the_default_is_the_embedder_cards_worst_group_or_the_labelled_fallback() -> None:
    table = simulator_table(None, None, embedder_card(Settings().vision.embedder))
    assert table.status in ("measured", "provisional")
    assert table.source in table.describe() and table.status in table.describe()


def test_a_card_with_tables_gives_its_worst_group_and_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    card = tomllib.loads(FIXTURE.read_text(encoding="utf-8"))
    card["calibration"]["status"] = "measured"
    card["similarity"]["western"] = card["similarity"]["fixture"]
    monkeypatch.setattr(similarity, "read_card", lambda name: card)
    table = simulator_table(None, None, "face_recognition_sface_2021dec")
    assert (table.group, table.status) == ("fixture", "measured")
    assert table.describe().startswith(
        "measured: group 'fixture' of model card face_recognition_sface_2021dec.toml")
    assert simulator_table(None, "western", "x").group == "western"
    # A card without tables: dlib's has the labelled provisional one; any other embedder's
    # cosine scale differs, so its card without tables is refused, saying what to do.
    monkeypatch.setattr(similarity, "read_card", lambda name: {"model": {}})
    dlib = embedder_card("dlib")
    assert simulator_table(None, None, dlib) is PROVISIONAL_DLIB
    with pytest.raises(DispenserError, match=r"x.toml has no \[similarity.<group>\] table; "
                                             "give --similarity FILE"):
        simulator_table(None, None, "x")
    with pytest.raises(DispenserError, match=rf"{dlib}.toml has no \[similarity.kpop\]"):
        simulator_table(None, "kpop", dlib)


def test_a_calibrate_file_picks_the_worst_group_or_the_one_asked_for(tmp_path: Path) -> None:
    text = FIXTURE.read_text(encoding="utf-8")
    other = text.split("[similarity.fixture]")[1].split("[recorded]")[0]
    path = tmp_path / "two.toml"
    path.write_text(text + "\n[similarity.western]" + other.replace("0.10, 0.17", "0.05, 0.17"),
                    encoding="utf-8")
    assert load_similarity_file(path).group == "fixture"
    western = load_similarity_file(path, "western")
    assert western.group == "western" and str(path) in western.describe()
    with pytest.raises(DispenserError, match=r"no \[similarity.nobody\] table"):
        load_similarity_file(path, "nobody")


@pytest.mark.parametrize(("edit", "message"), [
    (("impostor = [-0.33, ", "impostor = ["), r"\[similarity.fixture\]: impostor has 13 "
                                              r"values, probabilities 14"),
    (("impostor = [-0.33, -0.23", "impostor = [-0.33, -0.43"), "impostor must be "
                                                               "non-decreasing"),
    (("worst_group = \"fixture\"", "worst_group = \"kpop\""), r"no \[similarity.kpop\]"),
    (("genuine_pairs = 12000", "genuine_pairs = -1"), "genuine_pairs must be a whole"),
    (("probabilities = [0.0, ", "probabilities = [0.5, "), "probabilities must be"),
    (("genuine = [-0.05, 0.08", "genuine = \"high\"\nx = [-0.05, 0.08"),
     "genuine must be a list of finite numbers"),
])
def test_a_bad_similarity_file_fails_with_one_line_naming_the_key(
        tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = FIXTURE.read_text(encoding="utf-8")
    assert edit[0] in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(DispenserError, match=message) as caught:
        load_similarity_file(path)
    assert "\n" not in str(caught.value)


def test_a_file_without_tables_or_missing_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("[calibration]\nworst_group = \"x\"\n", encoding="utf-8")
    with pytest.raises(DispenserError, match="--write-similarity"):
        load_similarity_file(path)
    with pytest.raises(DispenserError, match="file not found"):
        load_similarity_file(tmp_path / "absent.toml")


def test_the_tables_deep_tail_counts_pairs_as_calibrate_does() -> None:
    # A table holds numpy's quantiles of n scores: the value at 0.999 of 1000 scores is
    # the second highest, which 2 of the 1000 pairs reach (not 1 - 0.999 of them), and
    # the maximum is reached by 1 pair in n. calibrate counts pairs at or above a
    # threshold, so the simulator's reading of the table must give the same shares.
    scores = np.sort(np.random.default_rng(4).normal(0.1, 0.1, 1000))
    probabilities = similarity.STANDARD_PROBABILITIES
    table = Quantiles(probabilities, tuple(float(v) for v in np.quantile(scores, probabilities)),
                      len(scores))
    np.testing.assert_allclose(table.tail_share(scores[-2:]), [2e-3, 1e-3], rtol=1e-3)
    assert float(table.quantile(1.0 - 2e-3)) == pytest.approx(scores[-2], abs=1e-4)

"""The epoch keys' structured orthogonal transform (dispenser.store.transform): it preserves
dot products to float32 precision for any template dimension (so matching is unchanged),
and once its key is shredded a stored row cannot be linked to its template better than
chance; what it does reveal (inner products among rows sealed under the same key) is
stated in docs/privacy.md and checked here too."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispenser.store import kernels, transform
from dispenser.store.keys import EpochKeys

# 128 and 512 are the embedders' dimensions; the others exercise the padding.
DIMS = st.sampled_from([128, 512]) | st.integers(1, 600)
SEEDS = st.integers(0, 2**32 - 1)
_PROPERTY = settings(max_examples=40, deadline=None)


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _random_key(rng: np.random.Generator, dim: int) -> np.ndarray:
    padded = transform.padded_dim(dim)
    return np.where(rng.random((transform.ROUNDS + 1, padded)) < 0.5, 1.0, -1.0
                    ).astype(np.float32)


def _seal(key: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Each row sealed by the store's numba kernel."""
    out = np.zeros((vectors.shape[0], key.shape[1]), np.float32)
    scratch = np.zeros((3, key.shape[1]), np.float32)
    for i, vector in enumerate(vectors):
        kernels.seal_row(key, vector, scratch, out[i])
    return out


def _sealed_case(dim: int, seed: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a random key, `count` random unit templates, those templates sealed)."""
    rng = np.random.default_rng(seed)
    key = _random_key(rng, dim)
    vectors = _unit(rng, count, dim)
    return key, vectors, _seal(key, vectors)


@_PROPERTY
@given(dim=DIMS, seed=SEEDS)
def test_sealing_preserves_dot_products_and_norms_to_float32_precision(dim: int,
                                                                      seed: int) -> None:
    _, vectors, rows = _sealed_case(dim, seed, 6)
    sealed = rows.astype(np.float64)
    plain = vectors.astype(np.float64)
    assert np.allclose(sealed @ sealed.T, plain @ plain.T, atol=2e-6)
    assert np.allclose(np.linalg.norm(sealed, axis=1), 1.0, atol=2e-6)


@pytest.mark.parametrize("dim", [128, 512, 100])
def test_the_transform_is_an_orthogonal_matrix(dim: int) -> None:
    """Q (padded_dim x dim, built column by column with the kernel) has Q^T Q = I."""
    key = _random_key(np.random.default_rng(dim), dim)
    q = _seal(key, np.eye(dim, dtype=np.float32)).astype(np.float64).T
    assert q.shape == (transform.padded_dim(dim), dim)
    assert np.abs(q.T @ q - np.eye(dim)).max() < 1e-6
    assert np.abs(q).max() < 0.5  # every coordinate mixes many: no identity-like column


@_PROPERTY
@given(dim=DIMS, seed=SEEDS)
def test_the_kernel_equals_the_numpy_reference_and_unsealing_inverts_it(dim: int,
                                                                       seed: int) -> None:
    key, vector, sealed = _sealed_case(dim, seed, 1)
    assert np.allclose(sealed[0], transform.seal_numpy(key.astype(np.float64),
                                                       vector[0].astype(np.float64)),
                       atol=1e-6)
    back = transform.unseal_numpy(key.astype(np.float64), sealed[0], dim)
    assert np.allclose(back, vector[0], atol=1e-6)


@pytest.mark.parametrize(("dim", "padded"),
                         [(1, 2), (2, 2), (100, 128), (128, 128), (129, 256), (512, 512)])
def test_rows_are_padded_to_the_next_power_of_two(dim: int, padded: int) -> None:
    assert transform.padded_dim(dim) == padded


@pytest.mark.parametrize("dim", [128, 512])
def test_epoch_keys_are_fresh_random_signs(dim: int) -> None:
    keys = EpochKeys(dim, slots=4, key_epoch_s=60.0)
    first, second = keys.keys[keys.current(0.0)], keys.keys[keys.current(60.0)]
    for key in (first, second):
        assert set(np.unique(key)) == {-1.0, 1.0}
        # about half of each sign (binomial, 6 standard deviations)
        assert abs(np.mean(key > 0) - 0.5) < 6 * 0.5 / math.sqrt(key.size)
    assert np.mean(first == second) < 0.6  # independent keys agree on about half the signs
    assert not keys._uniform.any()  # the generation scratch is zeroised
    keys.zeroise()
    keys.unlock()


# -- what an attacker holding sealed rows, but not the key, can do ---------------------

def _linked(candidates: np.ndarray, rows: np.ndarray, feature: str) -> int:
    """How many rows an attacker links to their own template (of the candidates, row i was
    made from candidate i) by the nearest candidate under `feature`."""
    if feature == "cosine":  # the row read as if it were a template
        score = np.abs(rows[:, :candidates.shape[1]] @ candidates.T)
        return int(np.sum(np.argmax(score, axis=1) == np.arange(len(rows))))
    # sorted magnitudes: unchanged by any sign flip or coordinate permutation, i.e. the
    # invariant an attacker would use against a transform that only shuffles and flips
    a = np.sort(np.abs(rows), axis=1)
    b = np.sort(np.abs(np.pad(candidates, ((0, 0), (0, rows.shape[1] - candidates.shape[1])))),
                axis=1)
    dist = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    return int(np.sum(np.argmin(dist, axis=1) == np.arange(len(rows))))


_PEOPLE = 200
# Linking at chance finds about 1 of 200; 8 or more has probability < 1e-5.
_CHANCE_BOUND = 8


@pytest.mark.parametrize("dim", [128, 512])
def test_after_shredding_rows_cannot_be_linked_to_their_templates(dim: int) -> None:
    rng = np.random.default_rng(16 + dim)
    people = _unit(rng, _PEOPLE, dim)
    keys = EpochKeys(dim, slots=3, key_epoch_s=60.0)
    k = keys.current(0.0)
    escaped = _seal(keys.keys[k], people)  # copies that escaped zeroisation
    assert keys.shred_unused(60.0) == 1  # the epoch ended with no row left: shredded
    assert not keys.keys.any()
    for feature in ("cosine", "sorted magnitudes"):
        assert _linked(people, escaped, feature) < _CHANCE_BOUND, feature
    keys.unlock()


def test_the_linking_attacks_succeed_against_weak_transforms() -> None:
    """The attacks above have power: they link almost every row when the "key" only flips
    signs (no mixing), or is a product of a few Householder reflections (most of the
    template passes through unchanged)."""
    rng = np.random.default_rng(3)
    people = _unit(rng, _PEOPLE, 128)
    flips = np.where(rng.random(128) < 0.5, 1.0, -1.0).astype(np.float32)
    assert _linked(people, people * flips, "sorted magnitudes") > 0.9 * _PEOPLE
    reflected = people.astype(np.float64)
    for _ in range(4):
        v = rng.standard_normal(128)
        v /= np.linalg.norm(v)
        reflected = reflected - 2.0 * np.outer(reflected @ v, v)
    assert _linked(people, reflected, "cosine") > 0.9 * _PEOPLE


def test_the_same_face_under_two_epoch_keys_cannot_be_linked() -> None:
    rng = np.random.default_rng(5)
    people = _unit(rng, _PEOPLE, 128)
    keys = EpochKeys(128, slots=3, key_epoch_s=60.0)
    first = _seal(keys.keys[keys.current(0.0)], people)
    second = _seal(keys.keys[keys.current(60.0)], people)
    same_person = np.sum(first * second, axis=1)
    # like two random unit vectors in 128 dimensions: standard deviation 1/sqrt(128)
    assert np.abs(same_person).max() < 6 / math.sqrt(128)
    assert _linked(first, second, "cosine") < _CHANCE_BOUND
    keys.zeroise()
    keys.unlock()


def test_rows_sealed_under_one_key_keep_their_pairwise_similarities() -> None:
    """The documented leak (docs/privacy.md, "Key shredding"): whoever holds the rows of
    one epoch, even without its key, learns how similar those templates are to each other,
    exactly. Epoch keys bound it to the people admitted within one epoch."""
    rng = np.random.default_rng(9)
    people = _unit(rng, 20, 128)
    keys = EpochKeys(128, slots=3, key_epoch_s=60.0)
    rows = _seal(keys.keys[keys.current(0.0)], people).astype(np.float64)
    plain = people.astype(np.float64)
    assert np.allclose(rows @ rows.T, plain @ plain.T, atol=2e-6)
    keys.zeroise()
    keys.unlock()

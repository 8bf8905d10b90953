"""Synthetic identity templates whose similarities behave like the real embedder's.

No face images ship with the project, yet the simulator needs templates for thousands of
simulated visitors. This module draws them from a small, documented generative model
(docs/simulator.md) fitted to four numbers that describe the real embedder: the mean and
spread of the cosine similarity between two templates of the *same* person (genuine) and
of *different* people (impostor).

The model, in the 128-d template space:

- a fixed population mean direction `m` (unit vector). Real face embeddings of different
  people are far from orthogonal (dlib's raw vectors of unrelated faces have cosine around
  0.8); random unit vectors would give cosine ~ N(0, 1/128) and make every crowd look
  perfectly separable. `m` carries the shared part.
- each person has an identity `u = (a m + w) / sqrt(1 + a^2)`, where `w` is a unit vector
  orthogonal to `m` drawn from an anisotropic Gaussian whose variances decay as a power
  law. `a^2 = rho / (1 - rho)` makes the identity-level impostor cosine exactly `rho` on
  average; the decay sets the *effective dimension* (participation ratio) `d_eff` of the
  between-person spread, and so the impostor spread: std ~ (1 - rho) / sqrt(d_eff).
- each visit's template is `normalise(u + s g)`, with `g` a random unit vector (fresh per
  visit) and `s = sigma * exp(tau_person z_person + tau_visit z_visit)` the visit's noise
  scale: log-normal, partly a property of the person (some faces are harder to recognise
  than others) and partly of the visit (pose, light, expression). Two visits' cosine is
  about `1 / sqrt((1 + s1^2)(1 + s2^2))`; the spread of `s` gives the genuine distribution
  its long lower tail (the repeat-takers the machine fails to recognise).

The parameters are fitted in closed form from the four target statistics (`fit`); the
tests sample the model and check the fitted statistics are met. The targets come from the
model card of the real embedder when it records measured statistics (`[similarity]` in
models/dlib_face_recognition_resnet_model_v1.toml); otherwise from `PROVISIONAL_DLIB`,
derived from dlib's published behaviour and clearly reported as provisional.

Nothing here touches a real face: the templates are synthetic by construction.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dispenser.errors import DispenserError

TEMPLATE_DIM = 128
MODEL_CARD = "dlib_face_recognition_resnet_model_v1.toml"


@dataclass(frozen=True)
class SimilarityStats:
    """Cosine similarity between L2-normalised templates: genuine vs impostor pairs."""

    genuine_mean: float
    genuine_std: float
    impostor_mean: float
    impostor_std: float
    source: str

    def __post_init__(self) -> None:
        if not (-1.0 < self.impostor_mean < self.genuine_mean < 1.0):
            raise DispenserError(
                f"similarity stats ({self.source}): need -1 < impostor_mean < genuine_mean < 1, "
                f"got impostor_mean={self.impostor_mean}, genuine_mean={self.genuine_mean}")
        if self.genuine_std <= 0 or self.impostor_std <= 0:
            raise DispenserError(
                f"similarity stats ({self.source}): standard deviations must be > 0")


# Provisional targets until the embedder's measured statistics are recorded in its model
# card. dlib reports 99.38% on LFW at Euclidean distance 0.6 between raw descriptors, whose
# norms are about 1.3-1.5 (tests/data/dlib_resnet_golden.npz). With |x| ~ 1.37, a raw
# distance d maps to cosine 1 - d^2 / (2 |x|^2): genuine LFW pairs (d mostly 0.3-0.5) give
# cosine ~0.96, unrelated faces (d ~0.85 +- 0.075) give ~0.80 +- 0.035; the threshold 0.6
# maps to ~0.904, where these spreads give an average error of ~0.7%, close to LFW's 0.62%.
# LFW pairs are photos taken years apart; two scans of one person minutes apart at the same
# machine are more alike, so these numbers are pessimistic about recognising repeat-takers.
PROVISIONAL_DLIB = SimilarityStats(
    genuine_mean=0.96, genuine_std=0.025, impostor_mean=0.80, impostor_std=0.035,
    source="provisional: derived from dlib's published LFW behaviour, not measured here")


def load_model_card_stats() -> SimilarityStats | None:
    """The measured statistics from the embedder's model card, or None if not recorded."""
    try:
        text = resources.files("dispenser.models").joinpath(MODEL_CARD).read_text("utf-8")
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        return None
    try:
        card = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DispenserError(f"model card {MODEL_CARD} is not valid TOML: {exc}") from None
    return stats_from_card(card)


def stats_from_card(card: dict[str, Any]) -> SimilarityStats | None:
    """Read the `[similarity]` table a model card records (None if absent or incomplete):

        [similarity]
        genuine_mean = 0.97      # cosine of two templates of the same person
        genuine_std = 0.02
        impostor_mean = 0.78     # cosine of templates of different people
        impostor_std = 0.04
        pairs = "what the pairs were (dataset, count)"
    """
    table = card.get("similarity")
    if not isinstance(table, dict):
        return None
    keys = ("genuine_mean", "genuine_std", "impostor_mean", "impostor_std")
    if not all(isinstance(table.get(k), int | float) for k in keys):
        return None
    g_mean, g_std, i_mean, i_std = (float(table[k]) for k in keys)
    pairs = table.get("pairs", "")
    return SimilarityStats(g_mean, g_std, i_mean, i_std,
                           source=f"measured: {MODEL_CARD} [similarity] {pairs}".strip())


def embedder_stats(path: Path | None = None) -> SimilarityStats:
    """The statistics to calibrate on: a `[similarity]` table from `path` (an operator's own
    measurements) if given, else the model card's measured ones, else the provisional dlib
    ones."""
    if path is not None:
        return load_stats_file(path)
    return load_model_card_stats() or PROVISIONAL_DLIB


def load_stats_file(path: Path) -> SimilarityStats:
    """A TOML file with a complete `[similarity]` table (as in a model card)."""
    try:
        card = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DispenserError(f"similarity: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise DispenserError(f"similarity: cannot read {path}: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DispenserError(f"similarity: {path} is not valid TOML: {exc}") from None
    stats = stats_from_card(card)
    if stats is None:
        raise DispenserError(f"similarity: {path} needs a [similarity] table with numbers "
                             "genuine_mean, genuine_std, impostor_mean, impostor_std")
    return dataclasses.replace(stats, source=f"measured: {path}" + (
        f" ({card['similarity']['pairs']})" if card["similarity"].get("pairs") else ""))


@dataclass(frozen=True)
class IdentityModel:
    """Parameters of the generative model (see the module docstring)."""

    rho: float          # mean cosine between identities of different people
    d_eff: float        # effective dimension of the between-person spread
    sigma: float        # median visit-to-visit noise (relative to the identity's unit norm)
    tau_person: float   # log-normal spread of the noise across people (hard-to-match faces)
    tau_visit: float    # log-normal spread of the noise across one person's visits
    dim: int = TEMPLATE_DIM

    @classmethod
    def fit(cls, stats: SimilarityStats, dim: int = TEMPLATE_DIM) -> IdentityModel:
        """Moment matching on the model's scalar structure (deterministic; checked by
        sampling full 128-d templates in the tests).

        With noise scales s1, s2 of two visits and nearly orthogonal noise directions,
        cos(t1, t2) ~ c / sqrt((1 + s1^2)(1 + s2^2)) where c is the identities' cosine (1 for
        a genuine pair, rho + (1 - rho) x with x ~ N(0, 1/d_eff) for an impostor pair) plus
        noise cross terms (`_leak`; s1^2 s2^2/dim for a genuine pair). The log-spread of s
        is split evenly between person and visit.
        """
        draws = _FitDraws.make()

        def genuine(sigma: float, tau: float) -> tuple[float, float]:
            s1, s2, _ = draws.scales(sigma, tau)
            shrink = 1.0 / np.sqrt((1 + s1**2) * (1 + s2**2))
            mean = float(shrink.mean())
            var = float((shrink**2 * (1 + s1**2 * s2**2 / dim)).mean()) - mean**2
            return mean, math.sqrt(max(var, 0.0))

        def sigma_for_mean(tau: float) -> float:
            lo, hi = 0.0, 10.0  # genuine mean falls as sigma grows
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if genuine(mid, tau)[0] > stats.genuine_mean else (lo, mid)
            return 0.5 * (lo + hi)

        tau_lo, tau_hi = 0.0, 3.0  # at a fixed mean, the genuine spread grows with tau
        if genuine(sigma_for_mean(0.0), 0.0)[1] >= stats.genuine_std:
            tau_hi = 0.0
        for _ in range(30):
            mid = 0.5 * (tau_lo + tau_hi)
            below = genuine(sigma_for_mean(mid), mid)[1] < stats.genuine_std
            tau_lo, tau_hi = (mid, tau_hi) if below else (tau_lo, mid)
        tau = 0.5 * (tau_lo + tau_hi)
        sigma = sigma_for_mean(tau)

        s1, _, s3 = draws.scales(sigma, tau)
        shrink2 = 1.0 / ((1 + s1**2) * (1 + s3**2))
        e_shrink = float(np.sqrt(shrink2).mean())
        rho = min(stats.impostor_mean / e_shrink, 0.999)
        cross = float((shrink2 * (_leak(s1, rho) + _leak(s3, rho) + s1**2 * s3**2)).mean()) / dim
        e_shrink2 = float(shrink2.mean())
        target = (stats.impostor_std**2 + (rho * e_shrink) ** 2 - cross) / e_shrink2 - rho**2
        d_eff = (1.0 - rho) ** 2 / target if target > 0 else float(dim - 1)
        d_eff = min(max(d_eff, 1.0), float(dim - 1))
        half = tau / math.sqrt(2.0)
        return cls(rho=rho, d_eff=d_eff, sigma=sigma, tau_person=half, tau_visit=half,
                   dim=dim)


def _leak(s: np.ndarray, rho: float) -> np.ndarray:
    """Variance (times dim) that one template's noise adds to an impostor cosine.

    The noise g moves the numerator by s (u_other . g) and the norm by s (u_own . g); as the
    two identities share the population direction these largely cancel, leaving
    s^2 |u_other - rho/(1+s^2) u_own|^2 = s^2 (1 - 2 rho^2/(1+s^2) + rho^2/(1+s^2)^2).
    """
    r = rho / (1.0 + s**2)
    return s**2 * (1.0 - 2.0 * rho * r + r**2)


@dataclass(frozen=True)
class _FitDraws:
    """Fixed standard-normal draws (common random numbers) so `fit` is deterministic and
    its bisections see a smooth, monotone function."""

    person: np.ndarray
    other_person: np.ndarray
    visits: np.ndarray

    @classmethod
    def make(cls, n: int = 8_000) -> _FitDraws:
        rng = np.random.default_rng(0xF17)
        return cls(rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal((3, n)))

    def scales(self, sigma: float, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noise scales of two visits of one person and one visit of another."""
        half = tau / math.sqrt(2.0)
        s1 = sigma * np.exp(half * (self.person + self.visits[0]))
        s2 = sigma * np.exp(half * (self.person + self.visits[1]))
        s3 = sigma * np.exp(half * (self.other_person + self.visits[2]))
        return s1, s2, s3


def _power_law_spectrum(n: int, d_eff: float) -> np.ndarray:
    """Variances lambda_k ~ k^-p summing to 1 whose participation ratio is `d_eff`."""
    k = np.arange(1, n + 1, dtype=np.float64)

    def ratio(p: float) -> float:
        lam = k**-p
        return float(lam.sum() ** 2 / (lam**2).sum())

    lo, hi = 0.0, 20.0  # ratio(0) = n (isotropic), decreasing in p
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ratio(mid) > d_eff else (lo, mid)
    lam: np.ndarray = k ** -(0.5 * (lo + hi))
    normalised: np.ndarray = lam / lam.sum()
    return normalised


_BLOCK = 256  # people created per block (see Population._grow)


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


class Population:
    """A seeded population of synthetic people; draws their per-visit templates.

    The population's geometry (mean direction, spread basis) is fixed by `seed`; people are
    numbered 0, 1, 2, ... and created on first use, in order, so a person's identity depends
    only on the seed and their number.
    """

    def __init__(self, model: IdentityModel, seed: int) -> None:
        self.model = model
        rng = np.random.default_rng([seed, 0x1D])
        basis, _ = np.linalg.qr(rng.standard_normal((model.dim, model.dim)))
        self._mean_dir = basis[:, 0].copy()
        # Columns 1.. span the complement of the mean direction; scale by sqrt(variance).
        spectrum = _power_law_spectrum(model.dim - 1, model.d_eff)
        self._spread = basis[:, 1:] * np.sqrt(spectrum)[None, :]
        self._a = math.sqrt(model.rho / (1.0 - model.rho))
        self._seed = seed
        self._identities = np.zeros((0, model.dim))
        self._noise = np.zeros(0)

    def __len__(self) -> int:
        return len(self._noise)

    def _grow(self, n: int) -> None:
        """Create people up to number n-1, in fixed blocks each drawn from its own seeded
        generator, so person k is the same whatever order the callers asked in."""
        if len(self._noise) >= n:
            return
        ids, noises = [self._identities], [self._noise]
        for block in range(len(self._noise) // _BLOCK, -(-n // _BLOCK)):
            rng = np.random.default_rng([self._seed, 0x1E, block])
            w = _normalise_rows(rng.standard_normal((_BLOCK, self.model.dim - 1)) @ self._spread.T)
            ids.append((self._a * self._mean_dir[None, :] + w) / math.sqrt(1.0 + self._a**2))
            noises.append(self.model.sigma * np.exp(self.model.tau_person
                                                    * rng.standard_normal(_BLOCK)))
        self._identities = np.concatenate(ids)
        self._noise = np.concatenate(noises)

    def typical_template(self, person: int, rng: np.random.Generator) -> np.ndarray:
        """A scan of `person` as a *typical* face and visit would give it: the median noise
        scale (sigma), in a random direction. Two such scans of one person have the median
        genuine similarity; the scripted demo uses them so its story does not hinge on a
        lucky draw (crowd runs use `templates`, the full distribution)."""
        if person < 0:
            raise ValueError(f"person numbers start at 0 (got {person})")
        self._grow(person + 1)
        g = rng.standard_normal(self.model.dim)
        t = self._identities[person] + self.model.sigma * g / np.linalg.norm(g)
        typical: np.ndarray = (t / np.linalg.norm(t)).astype(np.float32)
        return typical

    def templates(self, people: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Templates for many visits at once: row i belongs to `people[i]`."""
        if len(people) == 0:
            return np.zeros((0, self.model.dim), dtype=np.float32)
        self._grow(int(people.max()) + 1)
        ids = self._identities[people]
        g = _normalise_rows(rng.standard_normal((len(people), self.model.dim)))
        visit = np.exp(self.model.tau_visit * rng.standard_normal(len(people)))
        noise = self._noise[people] * visit
        return _normalise_rows(ids + noise[:, None] * g).astype(np.float32)


def sample_similarities(population: Population, pairs: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine similarities of `pairs` fresh pairs each (for reports).

    People are numbered from the population's current size on, so sampling never reuses a
    simulated visitor's identity.
    """
    start = len(population)
    people = np.arange(start, start + 2 * pairs)
    a = population.templates(people[:pairs], rng)
    b = population.templates(people[:pairs], rng)
    c = population.templates(people[pairs:], rng)
    genuine = np.einsum("ij,ij->i", a, b)
    impostor = np.einsum("ij,ij->i", a, c)
    return genuine.astype(np.float64), impostor.astype(np.float64)

"""Synthetic identity templates whose similarities follow a measured distribution, tail
included.

No face images ship with the project, yet the simulator needs templates for thousands of
simulated visitors, and the store compares real vectors. This module draws them from a
documented generative model (docs/simulator.md) fitted to a measured similarity table
(`dispenser.sim.similarity`): the quantiles of the cosine between two templates of
different people (impostor), of the same person (genuine) and, when measured, of the same
person within one session (the repeat-take case).

Why a tail model. A stranger facing N live templates is refused when any one of N
comparisons reaches the threshold, so what decides wrongful refusals is the impostor
distribution's upper tail (1e-3 to 1e-5 of pairs), not its mean and spread. The model
gives that tail its own parameters.

The model. An identity lives in `dim` dimensions split into orthogonal blocks (a fixed
random rotation then mixes them, as real embeddings are not axis-aligned):

- the population mean direction `m` (1 dimension): different people's embeddings are not
  orthogonal; `a2` of each identity's squared norm lies along `m`;
- look-alike levels: a tree of look-alike groups, branching `BRANCHING` (5, then 10 at
  each level), so two random people share the level-k group with probability
  `2 * (1 - LEVEL_P[k])` (0.2, 0.02, 0.002, 2e-4, 2e-5). Each level has its own block
  holding one random unit "centre" per group; a person's identity has share `w_k` on the
  centre of each of their groups, so two people sharing k levels are `W_k = w_1 + ... +
  w_k` closer than strangers. This is what puts a measured share of pairs far above the
  average: the tail at probabilities 0.9, 0.99, 0.999, 0.9999 and 0.99999 each gets the
  level that covers it;
- the person's own part (share `1 - W_5`): a random unit vector in its own block, with a
  power-law spectrum of effective dimension `own_dims`, which sets the spread of the bulk.

The identity is exactly a unit vector, and two identities sharing k levels have cosine
`a2 + (1 - a2)(W_k + sum_{l>k} w_l x_l + r x_own)`, each x the cosine of two independent
random unit vectors in a block. A visit adds isotropic noise: template = normalise(u + s
g), `g` a unit direction with share `session_share` on a direction fixed for the person's
session (same day, light, camera) and the rest fresh per visit (the share varies from
visit to visit, logit-normal around `session_share`: some takes are off), `s = sigma *
exp(tau_person z_person + tau_visit z_visit)` (log-normal: some faces and some visits are
harder).

`IdentityModel.fit` fits the noise to the genuine quantiles (exact: Monte Carlo on real
vectors with common random numbers), then the identity structure to the impostor
quantiles: on a law where each look-alike level is Gaussian given the two noise scales
(so a 1e-5 tail costs no more than the median), corrected by sampling 8 million pairs of
real templates of the fitted model. The tests sample real templates and compare their
distributions with the table: KS distance and tail shares.

What the quantiles cannot say (and the model therefore assumes): how the tail is shared
among people. Here the tail comes from the groups two people share, so nobody is close to
everyone, and a stranger's comparisons with N different people are nearly independent
there, the assumption `1 - (1 - f)^N` makes too. (In the bulk, a person's noise scale is
shared by all their comparisons, which makes them slightly dependent.)

Nothing here touches a real face: the templates are synthetic by construction.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dispenser.embedders import TEMPLATE_DIM
from dispenser.sim.similarity import Quantiles, SimilarityTable

MIN_DIM = 32
# Look-alike tree: branching per level, and the table probability each level reproduces
# (two people share level k with probability 2 * (1 - LEVEL_P[k])).
BRANCHING = (5, 10, 10, 10, 10)
LEVEL_P = (0.9, 0.99, 0.999, 0.9999, 0.99999)
# Probabilities of the impostor table the bulk parameters are fitted to.
BULK_P = (0.25, 0.5, 0.75)
_SHARE_MAX = 0.97


@dataclass(frozen=True)
class Layout:
    """Block sizes of a `dim`-dimensional identity (see the module docstring)."""

    dim: int
    level: int    # dimensions of each look-alike level's block
    own: int      # the person's own block (the rest after `m` and the levels)

    @classmethod
    def of(cls, dim: int) -> Layout:
        if dim < MIN_DIM:
            raise ValueError(f"template dimension must be at least {MIN_DIM}, not {dim}")
        level = dim // 16
        return cls(dim, level, dim - 1 - len(BRANCHING) * level)

    def slices(self) -> tuple[list[slice], slice]:
        """(level blocks, own block) coordinate ranges; coordinate 0 is `m`."""
        start = 1
        levels = []
        for _ in BRANCHING:
            levels.append(slice(start, start + self.level))
            start += self.level
        return levels, slice(start, start + self.own)


@dataclass(frozen=True)
class IdentityModel:
    """Parameters of the generative model (see the module docstring)."""

    mean_share: float                # a2: share of an identity along the population mean
    lookalike: tuple[float, ...]     # W_k: extra closeness of people sharing k levels
    own_dims: float                  # effective dimension of the person's own part
    sigma: float                     # median visit noise (relative to the identity's norm)
    tau_person: float                # log-normal spread of the noise across people
    tau_visit: float                 # ... and across one person's visits
    session_share: float             # median share of a visit's noise fixed for a session
    session_spread: float            # log-odds spread of that share across visits
    dim: int = TEMPLATE_DIM

    @property
    def layout(self) -> Layout:
        return Layout.of(self.dim)

    @property
    def level_shares(self) -> tuple[float, ...]:
        """w_k = W_k - W_(k-1): each level's share of the non-mean part."""
        w = np.diff(np.concatenate([[0.0], self.lookalike]))
        return tuple(float(x) for x in w)

    @classmethod
    def fit(cls, table: SimilarityTable, dim: int = TEMPLATE_DIM) -> IdentityModel:
        """The model whose sampled similarities reproduce `table` (deterministic; cached,
        as a study, its story and its report fit the same table)."""
        return _fitted(table.impostor, table.genuine, table.genuine_same_session, dim)


# ----------------------------------------------------------------------------- fitting

def _unit_rows(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def session_shares(share: float, spread: float, z: np.ndarray) -> np.ndarray:
    """Each visit's share of its noise on the session direction: logit-normal with median
    `share` and log-odds spread `spread` (z standard normal); 0 stays 0."""
    if share <= 0.0 or share >= 1.0:
        return np.full(z.shape, share)
    out: np.ndarray = 1.0 / (1.0 + np.exp(-(math.log(share / (1.0 - share)) + spread * z)))
    return out


class _GenuineDraws:
    """Common random numbers for the genuine fit: the dot products between an identity
    u and the noise directions of three visits (two in one session, one in another), from
    real `dim`-dimensional unit vectors, so every noise setting gives the model's exact
    genuine cosines and the bisections see smooth functions."""

    def __init__(self, dim: int, n: int = 6000) -> None:
        rng = np.random.default_rng(0xF17)
        # u = e_0; session directions s1, s2; visit directions v1, v2, v3.
        s1, s2, v1, v2, v3 = (_unit_rows(rng.standard_normal((n, dim))) for _ in range(5))
        self.dots = {name: np.einsum("ij,ij->i", x, y) for name, x, y in (
            ("s1v1", s1, v1), ("s1v2", s1, v2), ("s2v3", s2, v3), ("s1s2", s1, s2),
            ("v1v2", v1, v2), ("v1v3", v1, v3), ("s2v1", s2, v1), ("s1v3", s1, v3))}
        self.u = {name: x[:, 0] for name, x in (("s1", s1), ("s2", s2), ("v1", v1),
                                                ("v2", v2), ("v3", v3))}
        self.person = rng.standard_normal(n)
        self.visits = rng.standard_normal((2, n))
        self.session_z = rng.standard_normal((2, n))

    def scores(self, sigma: float, tau: float, session: tuple[float, float],
               same_session: bool) -> np.ndarray:
        """Genuine cosines: visit 1 against visit 2 (same session) or visit 3 (another);
        `session` is (median share, spread) of `session_shares`."""
        d, u = self.dots, self.u
        p1, p2 = (session_shares(*session, z) for z in self.session_z)
        a1, b1, a2, b2 = np.sqrt(p1), np.sqrt(1.0 - p1), np.sqrt(p2), np.sqrt(1.0 - p2)
        other_s, other_v = ("s1", "v2") if same_session else ("s2", "v3")
        n1 = np.sqrt(1.0 + 2 * a1 * b1 * d["s1v1"])
        n2 = np.sqrt(1.0 + 2 * a2 * b2 * d[f"{other_s}{other_v}"])
        u1 = (a1 * u["s1"] + b1 * u["v1"]) / n1
        u2 = (a2 * u[other_s] + b2 * u[other_v]) / n2
        ss = 1.0 if same_session else d["s1s2"]
        cross = (a1 * a2 * ss + a1 * b2 * d[f"s1{other_v}"] + b1 * a2 * d[f"{other_s}v1"]
                 + b1 * b2 * d[f"v1{other_v}"]) / (n1 * n2)
        half = tau / math.sqrt(2.0)
        x1 = sigma * np.exp(half * (self.person + self.visits[0]))
        x2 = sigma * np.exp(half * (self.person + self.visits[1]))
        out: np.ndarray = (1.0 + x1 * u1 + x2 * u2 + x1 * x2 * cross) / np.sqrt(
            (1 + x1**2 + 2 * x1 * u1) * (1 + x2**2 + 2 * x2 * u2))
        return out


def _bisect(f: Callable[[float], float], lo: float, hi: float, steps: int) -> float:
    """The root of an increasing function `f` on [lo, hi] (clamped to the ends)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 0.0 else (lo, mid)
    return 0.5 * (lo + hi)


def _fit_noise(genuine: Quantiles, same: Quantiles | None,
               dim: int) -> tuple[float, float, tuple[float, float]]:
    """(sigma, tau, (share, spread)): sigma to the genuine median, tau to its 5th
    percentile (the repeat-takers the machine fails to recognise); the session share to
    the same-session median and its spread to the same-session 5th percentile.
    Alternated, as the session noise slightly changes the cross-session spread."""
    draws = _GenuineDraws(dim)
    median, low = (float(genuine.quantile(p)) for p in (0.5, 0.05))
    session = (0.0, 0.0)

    def sigma_for(tau: float) -> float:  # the genuine median falls as sigma grows
        return _bisect(lambda x: median - float(np.median(
            draws.scores(x, tau, session, False))), 0.0, 20.0, 30)

    def low_at(tau: float) -> float:
        return float(np.quantile(draws.scores(sigma_for(tau), tau, session, False), 0.05))

    def session_for(sigma: float, tau: float, same: Quantiles) -> tuple[float, float]:
        same_median, same_low = (float(same.quantile(p)) for p in (0.5, 0.05))

        def share_for(spread: float) -> float:  # the same-session median grows with it
            return _bisect(lambda x: float(np.median(draws.scores(
                sigma, tau, (x, spread), True))) - same_median, 1e-4, 1.0 - 1e-4, 20)

        def low_for(spread: float) -> float:
            return float(np.quantile(draws.scores(
                sigma, tau, (share_for(spread), spread), True), 0.05))

        spread = (0.0 if low_for(0.0) <= same_low
                  else _bisect(lambda k: same_low - low_for(k), 0.0, 6.0, 16))
        return share_for(spread), spread

    sigma = tau = 0.0
    for _ in range(3 if same is not None else 1):
        tau = 0.0 if low_at(0.0) <= low else _bisect(lambda t: low - low_at(t), 0.0, 3.0, 22)
        sigma = sigma_for(tau)
        if same is not None:
            session = session_for(sigma, tau, same)
    return sigma, tau, session


def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, fractional error < 1.2e-7 (Numerical Recipes'
    Chebyshev fit; numpy has none and the fit needs tails down to 1e-6)."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = (-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277)))))))))
    r = t * np.exp(poly)
    out: np.ndarray = np.where(x >= 0.0, r, 2.0 - r)
    return out


def _level_probabilities() -> np.ndarray:
    """P(two random people share exactly k levels), k = 0..len(BRANCHING)."""
    at_least = np.concatenate([[1.0], 1.0 / np.cumprod(BRANCHING)])
    return np.append(at_least[:-1] - at_least[1:], at_least[-1])


class _ImpostorLaw:
    """Tail shares of the impostor cosine for given noise parameters: a mixture over the
    number k of shared look-alike levels of Gaussians conditional on the two visits' noise
    scales (drawn on a stratified normal grid), with the model's means and variances."""

    def __init__(self, layout: Layout, sigma: float, tau: float, points: int = 24) -> None:
        from statistics import NormalDist

        grid = np.array([NormalDist().inv_cdf((i + 0.5) / points) for i in range(points)])
        s1, s2 = (sigma * np.exp(tau * z) for z in np.meshgrid(grid, grid))
        s1, s2 = s1.ravel(), s2.ravel()
        self.hh = 1.0 / np.sqrt((1 + s1**2) * (1 + s2**2))
        dim = float(layout.dim)
        # Noise against the other identity and against the other noise (isotropic).
        self.noise_var = (s1**2 + s2**2 + (s1 * s2) ** 2) / dim
        # How a visit's noise moves its own norm, times the pair's identity cosine^2.
        self.norm_var = (s1**2 / (1 + s1**2) ** 2 + s2**2 / (1 + s2**2) ** 2) / dim
        self.layout = layout
        self.weights = _level_probabilities()

    def moments(self, a2: float, lookalike: np.ndarray,
                own_dims: float) -> tuple[np.ndarray, np.ndarray]:
        """(mean, sd), shape (levels + 1, draws)."""
        w = np.diff(np.concatenate([[0.0], lookalike]))
        rest = 1.0 - lookalike[-1]
        closeness = a2 + (1 - a2) * np.concatenate([[0.0], lookalike])
        unshared = np.array([float(np.sum(w[k:] ** 2)) for k in range(len(w) + 1)])
        id_var = (1 - a2) ** 2 * (unshared / self.layout.level + rest**2 / own_dims)
        mean = self.hh[None, :] * closeness[:, None]
        var = (id_var[:, None] + self.noise_var[None, :]
               + closeness[:, None] ** 2 * self.norm_var[None, :])
        return mean, self.hh[None, :] * np.sqrt(var)

    def quantiles(self, probabilities: np.ndarray, a2: float, lookalike: np.ndarray,
                  own_dims: float, start: np.ndarray) -> np.ndarray:
        """Cosines at `probabilities`, by Newton steps on log(tail share) from `start`."""
        mean, sd = self.moments(a2, lookalike, own_dims)
        log_share = np.log(1.0 - probabilities)
        c = start.copy()
        for _ in range(10):
            z = (c[:, None, None] - mean[None]) / sd[None]
            share = np.maximum(0.5 * _erfc(z / math.sqrt(2.0)).mean(axis=2) @ self.weights,
                               1e-300)
            density = (np.exp(-0.5 * z * z) / sd[None]).mean(axis=2) @ self.weights
            density = np.maximum(density / math.sqrt(2 * math.pi), 1e-12)
            step = np.clip(share * (np.log(share) - log_share) / density, -0.1, 0.1)
            c = c + step
            if np.max(np.abs(step)) < 1e-6:
                break
        return c


def _fit_law(target: np.ndarray, law: _ImpostorLaw, layout: Layout,
             start: tuple[float, np.ndarray, float] | None) -> tuple[float, np.ndarray, float]:
    """(a2, W, own_dims) whose `law` quantiles at BULK_P + LEVEL_P are `target`, by damped
    fixed-point iteration: a2 moves the median, own_dims the interquartile spread, W_k the
    quantile at LEVEL_P[k]; each update divides the error by that parameter's slope."""
    probabilities = np.array(BULK_P + LEVEL_P)
    gain = float(law.hh.mean())
    if start is None:
        start = (float(np.clip(target[1] / gain, 0.0, _SHARE_MAX)),
                 np.zeros(len(BRANCHING)), float(layout.own) / 2.0)
    a2, lookalike, own_dims = start
    model = target.copy()
    for _ in range(150):
        model = law.quantiles(probabilities, a2, lookalike, own_dims, model)
        error = target - model
        if np.max(np.abs(error)) < 2e-4:
            break
        a2 = float(np.clip(a2 + 0.7 * error[1] / gain, 0.0, _SHARE_MAX))
        spread = max(target[2] - target[0], 1e-4) / max(model[2] - model[0], 1e-4)
        own_dims = float(np.clip(own_dims * spread ** -1.2, 1.0, float(layout.own)))
        lookalike = lookalike + 0.7 * error[len(BULK_P):] / (gain * max(1 - a2, 0.05))
        lookalike = np.clip(np.maximum.accumulate(np.clip(lookalike, 0.0, None)),
                            0.0, _SHARE_MAX)
    return a2, lookalike, own_dims


# Fresh people whose all-pairs similarities correct the law's approximation: 2000 in each
# of 4 populations (the look-alike centres of one seeded population move the deep tail by
# tens of percent, so the fit aims at their average), 8 million pairs in all, about 80
# beyond the 1e-5 quantile.
_CHECK_PEOPLE = 2000
_CHECK_POPULATIONS = 4
_CORRECTIONS = 4


def _fit(impostor: Quantiles, genuine: Quantiles, same: Quantiles | None,
         dim: int) -> IdentityModel:
    """Noise first (genuine), then the identity structure (impostor): fitted on the
    conditional-Gaussian law, then corrected by sampling real templates of the fitted
    model (common random numbers) and refitting the law to the targets shifted by the
    sampled error, as the law's Gaussian tails are slightly heavier than the real ones.
    A table the model cannot reach (a bulk narrower than `dim` random directions allow)
    gets the closest fit; the report shows the sampled quantiles beside the table's."""
    layout = Layout.of(dim)
    sigma, tau, (share, spread) = _fit_noise(genuine, same, dim)
    law = _ImpostorLaw(layout, sigma, tau)
    probabilities = np.array(BULK_P + LEVEL_P)
    target = impostor.quantile(probabilities)
    aim = target.copy()
    fitted: tuple[float, np.ndarray, float] | None = None
    half = tau / math.sqrt(2.0)
    model = None
    for _ in range(_CORRECTIONS):
        fitted = _fit_law(aim, law, layout, fitted)
        a2, lookalike, own_dims = fitted
        model = IdentityModel(mean_share=a2, lookalike=tuple(float(x) for x in lookalike),
                              own_dims=own_dims, sigma=sigma, tau_person=half,
                              tau_visit=half, session_share=share,
                              session_spread=spread, dim=dim)
        checked = [Population(model, seed=0xC4EC + k) for k in range(_CHECK_POPULATIONS)]
        error = target - impostor_quantiles(checked, probabilities, _CHECK_PEOPLE,
                                            np.random.default_rng(0xC4EC))
        if np.max(np.abs(error)) < 2e-3:
            break
        aim = np.maximum.accumulate(aim + error)
    assert model is not None
    return model


# -------------------------------------------------------------------------- population

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


@dataclass(frozen=True)
class People:
    """Identities of a batch of people in block coordinates (before the rotation)."""

    identity: np.ndarray   # (n, dim), unit rows
    session: np.ndarray    # (n, dim), unit rows: the noise direction of their session
    noise: np.ndarray      # (n,) the person's part of the noise scale

    def __len__(self) -> int:
        return len(self.noise)


_BLOCK = 256  # people created per block (see Population._grow)


class Population:
    """A seeded population of synthetic people; draws their per-visit templates.

    The population's geometry (rotation, look-alike centres, spectrum) is fixed by `seed`;
    people are numbered 0, 1, 2, ... and created on first use, in order, so a person's
    identity depends only on the seed and their number. `fresh_people` draws anonymous
    extra people from a caller's generator (for sampling statistics) without growing it.
    """

    def __init__(self, model: IdentityModel, seed: int) -> None:
        self.model = model
        layout = model.layout
        rng = np.random.default_rng([seed, 0x1D])
        rotation, _ = np.linalg.qr(rng.standard_normal((layout.dim, layout.dim)))
        self._rotation_t = rotation.T.copy()
        self._leaves = int(np.prod(BRANCHING))
        self._centres = [_unit_rows(rng.standard_normal((int(np.prod(BRANCHING[:k + 1])),
                                                         layout.level)))
                         for k in range(len(BRANCHING))]
        self._own_scale = np.sqrt(_power_law_spectrum(layout.own, model.own_dims))
        self._levels, self._own = layout.slices()
        self._seed = seed
        self._people = People(np.zeros((0, layout.dim)), np.zeros((0, layout.dim)),
                              np.zeros(0))

    def __len__(self) -> int:
        return len(self._people)

    def fresh_people(self, n: int, rng: np.random.Generator) -> People:
        """n new people drawn from `rng` (not numbered, not kept)."""
        m, layout = self.model, self.model.layout
        identity = np.zeros((n, layout.dim))
        identity[:, 0] = math.sqrt(m.mean_share)
        body = math.sqrt(1.0 - m.mean_share)
        leaf = rng.integers(0, self._leaves, n)
        below = self._leaves
        for k, (width, share) in enumerate(zip(BRANCHING, m.level_shares, strict=True)):
            below //= width
            identity[:, self._levels[k]] = body * math.sqrt(share) * self._centres[k][leaf // below]
        own = _unit_rows(rng.standard_normal((n, layout.own)) * self._own_scale)
        identity[:, self._own] = body * math.sqrt(max(1.0 - m.lookalike[-1], 0.0)) * own
        session = _unit_rows(rng.standard_normal((n, layout.dim)))
        noise = m.sigma * np.exp(m.tau_person * rng.standard_normal(n))
        return People(_unit_rows(identity), session, noise)

    def _grow(self, n: int) -> None:
        """Create people up to number n-1, in fixed blocks each drawn from its own seeded
        generator, so person k is the same whatever order the callers asked in."""
        have = len(self._people)
        if have >= n:
            return
        parts = [self._people]
        for block in range(have // _BLOCK, -(-n // _BLOCK)):
            parts.append(self.fresh_people(
                _BLOCK, np.random.default_rng([self._seed, 0x1E, block])))
        self._people = People(*(np.concatenate([getattr(p, f) for p in parts])
                                for f in ("identity", "session", "noise")))

    def visits(self, people: People, rng: np.random.Generator,
               typical: bool = False, new_session: bool = False) -> np.ndarray:
        """One template per row of `people` (float32, unit rows): a fresh visit noise
        direction, in the person's session unless `new_session`. A `typical` visit has the
        median noise scale (sigma) and the median session share."""
        m, layout = self.model, self.model.layout
        n = len(people)
        z = np.zeros((2, n)) if typical else rng.standard_normal((2, n))
        scale = (np.full(n, m.sigma) if typical
                 else people.noise * np.exp(m.tau_visit * z[0]))
        session = people.session
        if new_session:
            session = _unit_rows(rng.standard_normal((n, layout.dim)))
        visit = _unit_rows(rng.standard_normal((n, layout.dim)))
        share = session_shares(m.session_share, m.session_spread, z[1])[:, None]
        direction = _unit_rows(np.sqrt(share) * session + np.sqrt(1.0 - share) * visit)
        raw = people.identity + scale[:, None] * direction
        return _unit_rows(raw @ self._rotation_t).astype(np.float32)

    def numbered(self, people: np.ndarray) -> People:
        """The numbered people `people` (created on first use)."""
        self._grow(int(people.max()) + 1 if len(people) else 0)
        p = self._people
        return People(p.identity[people], p.session[people], p.noise[people])

    def typical_template(self, person: int, rng: np.random.Generator) -> np.ndarray:
        """A scan of `person` as a *typical* face and visit would give it: the median noise
        scale (sigma), in a fresh visit direction within the person's session. Two such
        scans of one person have the median same-session similarity; the scripted demo
        uses them so its story does not hinge on a lucky draw (crowd runs use `templates`,
        the full distribution)."""
        if person < 0:
            raise ValueError(f"person numbers start at 0 (got {person})")
        one = self.numbered(np.array([person]))
        typical: np.ndarray = self.visits(one, rng, typical=True)[0]
        return typical

    def templates(self, people: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Templates for many visits at once: row i belongs to `people[i]`; one person's
        visits share their session (a repeat-taker comes back to the same machine)."""
        if len(people) == 0:
            return np.zeros((0, self.model.dim), dtype=np.float32)
        return self.visits(self.numbered(people), rng)


@dataclass(frozen=True)
class SampledSimilarities:
    """Cosines of freshly sampled synthetic pairs (for reports and checks)."""

    genuine: np.ndarray        # two visits of one person in different sessions
    same_session: np.ndarray   # two visits of one person in one session
    impostor: np.ndarray       # one visit each of two different people


def sample_similarities(population: Population, pairs: int,
                        rng: np.random.Generator) -> SampledSimilarities:
    """`pairs` fresh pairs of each kind, from people who are not simulated visitors."""
    people = population.fresh_people(2 * pairs, rng)
    first = People(people.identity[:pairs], people.session[:pairs], people.noise[:pairs])
    other = People(people.identity[pairs:], people.session[pairs:], people.noise[pairs:])
    a = population.visits(first, rng)
    same = population.visits(first, rng)
    elsewhere = population.visits(first, rng, new_session=True)
    b = population.visits(other, rng)

    def rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.einsum("ij,ij->i", x, y).astype(np.float64)
        return out

    return SampledSimilarities(rows(a, elsewhere), rows(a, same), rows(a, b))


def impostor_quantiles(populations: list[Population], probabilities: np.ndarray,
                       people: int, rng: np.random.Generator) -> np.ndarray:
    """Quantiles of the cosine over all pairs of `people` fresh people (one visit each) of
    every population, pooled."""
    pairs = people * (people - 1) // 2
    scores = np.empty(pairs * len(populations), dtype=np.float32)
    done = 0
    for population in populations:
        t = population.visits(population.fresh_people(people, rng), rng)
        for start in range(0, people, 512):
            band = t[start:start + 512] @ t.T
            for i in range(band.shape[0]):
                row = band[i, start + i + 1:]
                scores[done:done + len(row)] = row
                done += len(row)
    out: np.ndarray = np.quantile(scores, probabilities)
    return out


@functools.lru_cache(maxsize=16)
def _fitted(impostor: Quantiles, genuine: Quantiles, same: Quantiles | None,
            dim: int) -> IdentityModel:
    return _fit(impostor, genuine, same, dim)


def impostor_tail_counts(population: Population, people: int, thresholds: np.ndarray,
                         rng: np.random.Generator, chunk: int = 1024) -> tuple[np.ndarray, int]:
    """(pairs at or above each threshold, pairs compared) over all pairs of `people`
    fresh people, one visit each: enough pairs to see a 1e-5 tail without storing them."""
    t = population.visits(population.fresh_people(people, rng), rng)
    counts = np.zeros(len(thresholds), dtype=np.int64)
    for start in range(0, people, chunk):
        block = t[start:start + chunk] @ t[start:].T
        # Keep the pairs (i, j) with j > i: the strict upper triangle of this band.
        upper = np.triu(np.ones(block.shape, dtype=bool), k=1)
        scores = np.sort(block[upper])
        counts += len(scores) - np.searchsorted(scores, thresholds, side="left")
    return counts, people * (people - 1) // 2


def strangers_matched(population: Population, live: int, strangers: int,
                      thresholds: np.ndarray, rng: np.random.Generator,
                      batch: int = 500) -> np.ndarray:
    """How many of `strangers` fresh people reach each threshold against at least one of
    `live` templates of other people (their best match is at or above it). Each batch of
    strangers meets a newly drawn set of live templates."""
    matched = np.zeros(len(thresholds), dtype=np.int64)
    for start in range(0, strangers, batch):
        n = min(batch, strangers - start)
        people = population.fresh_people(live + n, rng)
        t = population.visits(people, rng)
        best = (t[live:] @ t[:live].T).max(axis=1)
        matched += np.count_nonzero(best[:, None] >= thresholds[None, :], axis=0)
    return matched

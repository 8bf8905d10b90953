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
distribution's upper tail (1e-3 to 1e-6 of pairs), not its mean and spread. The model
gives that tail its own parameters.

The model. A template has `dim` coordinates (a fixed random rotation then mixes them, as
real embeddings are not axis-aligned): coordinate 0 is the population mean direction `m`
(different people's embeddings are not orthogonal: `a2` of each identity's squared norm
lies along it), the other `dim - 1` the person space, where the rest of the identity and
the visit noise live:

- look-alike levels: a tree of look-alike groups, branching `BRANCHING` (5, then 10 at
  each level), so two random people share the level-k group with probability
  `2 * (1 - LEVEL_P[k])` (0.2, 0.02, ..., 2e-6). Each group has a unit "centre", a sign
  vector over the whole person space hashed from the population's seed, the level and
  the group's number (as unrelated to the others as random directions, and the half
  million deepest groups need no table); a person's identity has share `w_k` on the
  centre of each of their groups, so two people sharing k levels are `W_k = w_1 + ... +
  w_k` closer than strangers. This is what puts a measured share of pairs far above
  the average: the tail at probabilities 0.9, 0.99, ..., 0.999999 each gets the level
  that covers it;
- the person's own part (share `1 - W_6`): a random unit vector isotropic in `own_dims`
  dimensions (`_flat_spectrum`), which sets the spread of the bulk. Two own parts have a
  bounded cosine, density ~ (1 - x^2)^((own_dims - 3) / 2), whose tail is lighter than a
  Gaussian's: a bulk of a measured spread then leaves the tail to the levels.

Two people sharing k levels have person parts with cosine close to `W_k` plus terms of
variance 1/(dim - 1) (centres they do not share) and the own parts' cosine. A visit adds
isotropic noise: template = normalise(u + s g), `g` a unit direction with share
`session_share` on a direction fixed for the person's session (same day, light, camera)
and the rest fresh per visit (the share varies from visit to visit, logit-normal around
`session_share`: some takes are off), `s = sigma * exp(tau_person z_person + tau_visit
z_visit)` (log-normal: some faces and some visits are harder).

`IdentityModel.fit` fits the noise to the genuine quantiles (exact: Monte Carlo on real
vectors with common random numbers), then the identity structure to the impostor
quantiles: the bulk first (the widest spread that neither exceeds the table's
interquartile range nor its measured tail), then the levels to the tail quantiles the
table measured; both on an analytic law (`_ImpostorLaw`), corrected by sampling real
templates of the fitted model, per number of shared levels (`impostor_quantiles`), so
even the 2e-6 level is measured from thousands of pairs. The tests sample real templates
and compare their distributions with the table: KS distance and tail shares, and the
per-visit refusal rates calibrate measured on the tuning set.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from dispenser.embedders import TEMPLATE_DIM
from dispenser.sim.similarity import Quantiles, SimilarityTable, any_of

MIN_DIM = 32
# Look-alike tree: branching per level, and the table probability each level reproduces
# (two people share level k with probability 2 * (1 - LEVEL_P[k])). Down to 1e-6: at a
# station peak the refusal threshold sits where 1e-5 to 1e-6 of impostor pairs score.
BRANCHING = (5, 10, 10, 10, 10, 10)
LEVEL_P = (0.9, 0.99, 0.999, 0.9999, 0.99999, 0.999999)
# Probabilities of the impostor table the bulk parameters are fitted to.
BULK_P = (0.25, 0.5, 0.75)
_SHARE_MAX = 0.97
# Fewest dimensions of a person's own part (below 3 the own parts' cosine piles up at +-1).
MIN_OWN_DIMS = 4.0


def person_dims(dim: int) -> int:
    """Coordinates of the person space: all but the population mean direction."""
    if dim < MIN_DIM:
        raise ValueError(f"template dimension must be at least {MIN_DIM}, not {dim}")
    return dim - 1


@dataclass(frozen=True)
class IdentityModel:
    """Parameters of the generative model (see the module docstring)."""

    mean_share: float                # a2: share of an identity along the population mean
    lookalike: tuple[float, ...]     # W_k: extra closeness of people sharing k levels
    own_dims: float                  # dimensions the person's own part is isotropic in
    sigma: float                     # median visit noise (relative to the identity's norm)
    tau_person: float                # log-normal spread of the noise across people
    tau_visit: float                 # ... and across one person's visits
    session_share: float             # median share of a visit's noise fixed for a session
    session_spread: float            # log-odds spread of that share across visits
    dim: int = TEMPLATE_DIM

    @property
    def person(self) -> int:
        """Dimensions of the person space (see `person_dims`)."""
        return person_dims(self.dim)

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


def own_cosines(d: float, points: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """(x, weight): a quadrature of the cosine of two people's own parts, isotropic in d
    dimensions, whose density is proportional to (1 - x^2)^((d - 3) / 2) on [-1, 1]
    (the nodes span +-7 standard deviations, 1/sqrt(d) each, or all of [-1, 1])."""
    reach = min(1.0, 7.0 / math.sqrt(d))
    x = np.linspace(-reach, reach, points + 2)[1:-1]
    weight = (1.0 - x * x) ** ((d - 3.0) / 2.0)
    out = weight / weight.sum()
    return x, out


class _ImpostorLaw:
    """Tail shares of the impostor cosine for given noise parameters: a mixture over the
    number k of shared look-alike levels, the two visits' noise scales (a stratified
    normal grid) and the cosine x of the two own parts (`own_cosines`: bounded, its tail
    is far lighter than a Gaussian's of the same spread) of Gaussians for the rest (the
    visit noise, the centres two people do not share), with the model's moments."""

    def __init__(self, dim: int, sigma: float, tau: float, points: int = 8) -> None:
        from statistics import NormalDist

        grid = np.array([NormalDist().inv_cdf((i + 0.5) / points) for i in range(points)])
        s1, s2 = (sigma * np.exp(tau * z) for z in np.meshgrid(grid, grid))
        s1, s2 = s1.ravel(), s2.ravel()
        self.hh = 1.0 / np.sqrt((1 + s1**2) * (1 + s2**2))
        # Noise against the other identity and against the other noise (isotropic).
        self.noise_var = (s1**2 + s2**2 + (s1 * s2) ** 2) / dim
        # How a visit's noise moves its own norm, times the pair's identity cosine^2.
        self.norm_var = (s1**2 / (1 + s1**2) ** 2 + s2**2 / (1 + s2**2) ** 2) / dim
        self.person = person_dims(dim)
        self.weights = _level_probabilities()

    def components(self, a2: float, lookalike: np.ndarray,
                   own_dims: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, sd, weight) of the Gaussian components, shape (levels + 1, draws, x).
        The person part of an identity is a sum of unit parts with shares s (the level
        centres' w_k, the own part's rest), so two people's person parts have cosine
        sum_ab sqrt(s_a s_b) e_a . e'_b: 1 for a shared centre, x for the own parts,
        variance 1/person for each other term."""
        w = np.diff(np.concatenate([[0.0], lookalike]))
        rest = 1.0 - lookalike[-1]
        closeness = a2 + (1 - a2) * np.concatenate([[0.0], lookalike])
        shared = np.concatenate([[0.0], np.cumsum(w**2)])
        id_var = (1 - a2) ** 2 * (1.0 - shared - rest**2) / self.person
        x, x_weight = own_cosines(own_dims)
        mean = self.hh[None, :, None] * (closeness[:, None, None]
                                         + (1 - a2) * rest * x[None, None, :])
        var = (id_var[:, None] + self.noise_var[None, :]
               + closeness[:, None] ** 2 * self.norm_var[None, :])
        sd = self.hh[None, :, None] * np.sqrt(var)[:, :, None]
        weight = (self.weights[:, None, None] * x_weight[None, None, :]) / len(self.hh)
        return mean, sd, weight

    def quantiles(self, probabilities: np.ndarray, a2: float, lookalike: np.ndarray,
                  own_dims: float, start: np.ndarray) -> np.ndarray:
        """Cosines at `probabilities`, by Newton steps on log(tail share) from `start`."""
        mean, sd, weight = (a.ravel() for a in np.broadcast_arrays(
            *self.components(a2, lookalike, own_dims)))
        log_share = np.log(1.0 - probabilities)
        c = start.copy()
        for _ in range(10):
            z = (c[:, None] - mean[None]) / sd[None]
            share = np.maximum(0.5 * _erfc(z / math.sqrt(2.0)) @ weight, 1e-300)
            density = np.maximum((np.exp(-0.5 * z * z) / sd[None]) @ weight
                                 / math.sqrt(2 * math.pi), 1e-12)
            step = np.clip(share * (np.log(share) - log_share) / density, -0.1, 0.1)
            c = c + step
            if np.max(np.abs(step)) < 1e-6:
                break
        return c


def _measured(table: Quantiles, probabilities: np.ndarray) -> np.ndarray:
    """Which `probabilities` lie inside what the table measured: not past its maximum,
    which 1 of its pairs reaches (with the pair count unknown: not past its last
    probability below 1). Beyond, the table extrapolates its last segment."""
    if table.pairs > 0:
        out: np.ndarray = (1.0 - probabilities) * table.pairs >= 1.0
        return out
    inside = max(p for p in table.probabilities if p < 1.0)
    return probabilities <= inside


def _fit_bulk(target: np.ndarray, measured: np.ndarray, law: _ImpostorLaw,
              a2: float, own_dims: float) -> tuple[float, float]:
    """(a2, own_dims) of the bulk alone (no look-alike levels): a2 to the median, own_dims
    to the widest spread that neither exceeds the table's interquartile range nor puts
    more pairs than the table beyond any measured tail point (`measured`, per LEVEL_P).

    The look-alike levels can only add pairs to the tail. Where the table's tail is
    lighter than a bulk of its interquartile range would give, the bulk is narrowed: what
    refuses strangers is the tail, and a model whose bulk overstated it would report
    refusals the measurement does not show."""
    probabilities = np.array(BULK_P + tuple(p for p, m in zip(LEVEL_P, measured,
                                                              strict=True) if m))
    aim = np.concatenate([target[:len(BULK_P)], target[len(BULK_P):][measured]])
    gain = float(law.hh.mean())
    none = np.zeros(len(BRANCHING))
    model = aim.copy()
    for _ in range(200):
        model = law.quantiles(probabilities, a2, none, own_dims, model)
        tail = (aim[3:] - aim[1]) / np.maximum(model[3:] - model[1], 1e-4)
        spread = min(max(aim[2] - aim[0], 1e-4) / max(model[2] - model[0], 1e-4),
                     float(np.min(tail, initial=np.inf)))
        if abs(aim[1] - model[1]) < 2e-4 and abs(spread - 1.0) < 1e-3:
            break
        a2 = float(np.clip(a2 + 0.7 * (aim[1] - model[1]) / gain, 0.0, _SHARE_MAX))
        own_dims = float(np.clip(own_dims * spread ** -1.2, MIN_OWN_DIMS, float(law.person)))
    return a2, own_dims


def _fit_law(target: np.ndarray, measured: np.ndarray, law: _ImpostorLaw,
             start: tuple[float, np.ndarray, float] | None) -> tuple[float, np.ndarray, float]:
    """(a2, W, own_dims) whose `law` quantiles at BULK_P + LEVEL_P are `target`: the bulk
    first (`_fit_bulk`), then, at that spread, a2 and the look-alike levels by damped
    fixed-point iteration: a2 moves the median, W_k the quantile at LEVEL_P[k]; each
    update divides the error by that parameter's slope. Levels past the measured tail
    add nothing."""
    probabilities = np.array(BULK_P + LEVEL_P)
    gain = float(law.hh.mean())
    levels = slice(len(BULK_P), None)
    if start is None:
        start = (float(np.clip(target[1] / gain, 0.0, _SHARE_MAX)),
                 np.zeros(len(BRANCHING)), float(law.person) / 2.0)
    a2, own_dims = _fit_bulk(target, measured, law, start[0], start[2])
    lookalike = start[1]
    model = target.copy()
    for _ in range(200):
        model = law.quantiles(probabilities, a2, lookalike, own_dims, model)
        error = target - model
        if abs(error[1]) < 2e-4 and np.max(np.abs(error[levels][measured]), initial=0.0) < 2e-4:
            break
        a2 = float(np.clip(a2 + 0.7 * error[1] / gain, 0.0, _SHARE_MAX))
        step = np.where(measured, 0.7 * error[levels] / (gain * max(1 - a2, 0.05)), 0.0)
        lookalike = np.clip(np.maximum.accumulate(np.clip(lookalike + step, 0.0, None)),
                            0.0, _SHARE_MAX)
    return a2, lookalike, own_dims


# The sampled check that corrects the law's approximation: all pairs of 2000 fresh people
# in each of 2 populations (4 million pairs), plus 3000 pairs per population sharing each
# number k >= 1 of look-alike levels, pooled per k and weighted by how often two people
# share k levels, so the deepest level is measured from 6,000 pairs, not from the ~8 of
# the 4 million that share it.
_CHECK_PEOPLE = 2000
_CHECK_POPULATIONS = 2
_CHECK_SHARING = 3000
_CORRECTIONS = 3


def _fit(impostor: Quantiles, genuine: Quantiles, same: Quantiles | None,
         dim: int) -> IdentityModel:
    """Noise first (genuine), then the identity structure (impostor): fitted on the
    conditional-Gaussian law, then corrected by sampling real templates of the fitted
    model (common random numbers) and refitting the law to the targets shifted by the
    sampled error, as the law's Gaussian tails are only close to the real ones.
    A table the model cannot reach (a bulk narrower than `dim` random directions allow)
    gets the closest fit; the report shows the sampled quantiles beside the table's."""
    sigma, tau, (share, spread) = _fit_noise(genuine, same, dim)
    law = _ImpostorLaw(dim, sigma, tau)
    probabilities = np.array(BULK_P + LEVEL_P)
    target = impostor.quantile(probabilities)
    measured = _measured(impostor, np.array(LEVEL_P))
    fittable = np.concatenate([np.ones(len(BULK_P), dtype=bool), measured])
    aim = target.copy()
    fitted: tuple[float, np.ndarray, float] | None = None
    half = tau / math.sqrt(2.0)
    model: IdentityModel | None = None
    last: np.ndarray | None = None
    for _ in range(_CORRECTIONS):
        fitted = _fit_law(aim, measured, law, fitted)
        a2, lookalike, own_dims = fitted
        model = IdentityModel(mean_share=a2, lookalike=tuple(float(x) for x in lookalike),
                              own_dims=own_dims, sigma=sigma, tau_person=half,
                              tau_visit=half, session_share=share,
                              session_spread=spread, dim=dim)
        checked = [Population(model, seed=0xC4EC + k) for k in range(_CHECK_POPULATIONS)]
        sampled = impostor_quantiles(checked, probabilities, _CHECK_PEOPLE, _CHECK_SHARING,
                                     np.random.default_rng(0xC4EC))
        # Done when every point the model can follow is within 0.002 (past the measured
        # tail, a lighter table than the bulk is left, see `_fit_bulk`), or when a
        # correction no longer moves the model (a table it cannot reach everywhere).
        if np.max(np.abs(target - sampled)[fittable]) < 2e-3 or (
                last is not None and np.max(np.abs(sampled - last)) < 2e-3):
            break
        error, last = target - sampled, sampled
        aim = np.maximum.accumulate(aim + error)
    assert model is not None
    return model


# -------------------------------------------------------------------------- population

def _flat_spectrum(n: int, d: float) -> np.ndarray:
    """Variances of an own part isotropic in d of `n` coordinates: 1 on the first floor(d),
    a fraction f on the next, summing to 1, with participation ratio (floor(d) + f)^2 /
    (floor(d) + f^2) = d, so two own parts have cosine variance 1/d."""
    whole = min(int(d), n)
    lam = np.zeros(n)
    lam[:whole] = 1.0
    if whole < n:
        lo, hi = 0.0, 1.0  # the ratio grows with f
        for _ in range(50):
            f = 0.5 * (lo + hi)
            lo, hi = (f, hi) if (whole + f) ** 2 / (whole + f * f) < d else (lo, f)
        lam[whole] = 0.5 * (lo + hi)
    out: np.ndarray = lam / lam.sum()
    return out


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A 64-bit integer hash (SplitMix64's finaliser), elementwise; uint64 wraps."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: np.ndarray = x ^ (x >> np.uint64(31))
    return out


def _leaf_groups(leaves: np.ndarray) -> list[np.ndarray]:
    """The look-alike group of each leaf at every level (groups numbered per level)."""
    below = int(np.prod(BRANCHING))
    groups = []
    for width in BRANCHING:
        below //= width
        groups.append(leaves // below)
    return groups


def shared_levels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many look-alike levels the leaves `a` and `b` share (broadcast): the length of
    their common path from the root."""
    out = np.zeros(np.broadcast_shapes(a.shape, b.shape), dtype=np.int64)
    for ga, gb in zip(_leaf_groups(a), _leaf_groups(b), strict=True):
        out += ga == gb
    return out


@dataclass(frozen=True)
class People:
    """Identities of a batch of people in model coordinates (before the rotation)."""

    identity: np.ndarray   # (n, dim), unit rows
    session: np.ndarray    # (n, dim), unit rows: the noise direction of their session
    noise: np.ndarray      # (n,) the person's part of the noise scale
    leaf: np.ndarray       # (n,) their leaf of the look-alike tree

    def __len__(self) -> int:
        return len(self.noise)

    def rows(self, which: slice | np.ndarray) -> People:
        """The people at `which`."""
        return People(self.identity[which], self.session[which], self.noise[which],
                      self.leaf[which])

    @staticmethod
    def joined(parts: list[People]) -> People:
        return People(*(np.concatenate([getattr(p, f) for p in parts])
                        for f in ("identity", "session", "noise", "leaf")))


_BLOCK = 256  # people created per block (see Population._grow)


class Population:
    """A seeded population of synthetic people; draws their per-visit templates.

    The population's geometry (rotation, look-alike centres, spectrum) is fixed by `seed`;
    a look-alike group's centre is a sign vector hashed from the seed, its level and its
    number, so the half-million deepest groups need no table. People are numbered 0, 1,
    2, ... and created on first use, in order, so a person's identity depends only on the
    seed and their number. `fresh_people` draws anonymous extra people from a caller's
    generator (for sampling statistics) without growing it.
    """

    def __init__(self, model: IdentityModel, seed: int) -> None:
        self.model = model
        rng = np.random.default_rng([seed, 0x1D])
        rotation, _ = np.linalg.qr(rng.standard_normal((model.dim, model.dim)))
        self._rotation_t = rotation.T.copy()
        self._leaves = int(np.prod(BRANCHING))
        self._level_keys = [int(k) for k in _splitmix64(
            np.arange(len(BRANCHING), dtype=np.uint64) + np.uint64(seed % (1 << 48) << 8))]
        self._own_scale = np.sqrt(_flat_spectrum(model.person, model.own_dims))
        self._seed = seed
        self._people = People(np.zeros((0, model.dim)), np.zeros((0, model.dim)),
                              np.zeros(0), np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return len(self._people)

    def _centres(self, level: int, groups: np.ndarray) -> np.ndarray:
        """(n, person) unit centres of look-alike `groups` at `level`: signs
        +-1/sqrt(person) from the bits of a hash of (population, level, group, 64-coordinate
        word), as unrelated as random directions."""
        width = self.model.person
        words = -(-width // 64)
        keys = ((groups.astype(np.uint64)[:, None] * np.uint64(words)
                 + np.arange(words, dtype=np.uint64)[None, :]) ^ np.uint64(self._level_keys[level]))
        bits = np.unpackbits(_splitmix64(keys).view(np.uint8), axis=1)[:, :width]
        out: np.ndarray = (2.0 * bits - 1.0) / math.sqrt(width)
        return out

    def people_at(self, leaves: np.ndarray, rng: np.random.Generator) -> People:
        """New people at the given `leaves` of the look-alike tree (own part, session
        direction and noise scale drawn from `rng`)."""
        m, n = self.model, len(leaves)
        person = np.zeros((n, m.person))
        for k, (groups, share) in enumerate(zip(_leaf_groups(leaves), m.level_shares,
                                                strict=True)):
            if share > 0.0:
                person += math.sqrt(share) * self._centres(k, groups)
        own = _unit_rows(rng.standard_normal((n, m.person)) * self._own_scale)
        person += math.sqrt(max(1.0 - m.lookalike[-1], 0.0)) * own
        identity = np.empty((n, m.dim))
        identity[:, 0] = math.sqrt(m.mean_share)
        identity[:, 1:] = math.sqrt(1.0 - m.mean_share) * _unit_rows(person)
        session = _unit_rows(rng.standard_normal((n, m.dim)))
        noise = m.sigma * np.exp(m.tau_person * rng.standard_normal(n))
        return People(identity, session, noise, leaves)

    def fresh_people(self, n: int, rng: np.random.Generator) -> People:
        """n new people drawn from `rng` (not numbered, not kept)."""
        return self.people_at(rng.integers(0, self._leaves, n), rng)

    def pairs_sharing(self, levels: int, n: int,
                      rng: np.random.Generator) -> tuple[People, People]:
        """n pairs of new people who share exactly `levels` look-alike levels (the same
        path from the root that far, then different groups)."""
        first = np.zeros(n, dtype=np.int64)
        second = np.zeros(n, dtype=np.int64)
        for k, width in enumerate(BRANCHING):
            digit = rng.integers(0, width, n)
            if k < levels:
                other = digit
            elif k == levels:
                other = (digit + rng.integers(1, width, n)) % width
            else:
                other = rng.integers(0, width, n)
            first = first * width + digit
            second = second * width + other
        return self.people_at(first, rng), self.people_at(second, rng)

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
        self._people = People.joined(parts)

    def visits(self, people: People, rng: np.random.Generator,
               typical: bool = False, new_session: bool = False) -> np.ndarray:
        """One template per row of `people` (float32, unit rows): a fresh visit noise
        direction, in the person's session unless `new_session`. A `typical` visit has the
        median noise scale (sigma) and the median session share."""
        m = self.model
        n = len(people)
        z = np.zeros((2, n)) if typical else rng.standard_normal((2, n))
        scale = (np.full(n, m.sigma) if typical
                 else people.noise * np.exp(m.tau_visit * z[0]))
        session = people.session
        if new_session:
            session = _unit_rows(rng.standard_normal((n, m.dim)))
        visit = _unit_rows(rng.standard_normal((n, m.dim)))
        share = session_shares(m.session_share, m.session_spread, z[1])[:, None]
        direction = _unit_rows(np.sqrt(share) * session + np.sqrt(1.0 - share) * visit)
        raw = people.identity + scale[:, None] * direction
        return _unit_rows(raw @ self._rotation_t).astype(np.float32)

    def numbered(self, people: np.ndarray) -> People:
        """The numbered people `people` (created on first use)."""
        self._grow(int(people.max()) + 1 if len(people) else 0)
        return self._people.rows(people)

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
    first, other = people.rows(slice(None, pairs)), people.rows(slice(pairs, None))
    a = population.visits(first, rng)
    same = population.visits(first, rng)
    elsewhere = population.visits(first, rng, new_session=True)
    b = population.visits(other, rng)

    def rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.einsum("ij,ij->i", x, y).astype(np.float64)
        return out

    return SampledSimilarities(rows(a, elsewhere), rows(a, same), rows(a, b))


def _upper_bands(t: np.ndarray, band: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """All pairs i < j of the templates `t`, a band of rows at a time: (first row, the
    band's cosines against rows from there on, the mask of its strict upper triangle)."""
    for start in range(0, len(t), band):
        block = t[start:start + band] @ t[start:].T
        yield start, block, np.triu(np.ones(block.shape, dtype=bool), k=1)


def _upper_pairs(t: np.ndarray, leaf: np.ndarray,
                 band: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(cosine, shared levels) of every pair i < j of the templates `t`."""
    scores, levels = [], []
    for start, block, upper in _upper_bands(t, band):
        scores.append(block[upper])
        levels.append(shared_levels(leaf[start:start + band, None], leaf[None, start:])[upper])
    return np.concatenate(scores), np.concatenate(levels)


def _mixture_quantiles(strata: list[np.ndarray], weights: np.ndarray,
                       probabilities: np.ndarray) -> np.ndarray:
    """Quantiles of the mixture of the sorted samples `strata` with `weights`: the cosine
    whose weighted share of scores at or above it is 1 - p (bisection)."""
    def share(c: float) -> float:  # queried in the samples' own dtype: no conversion
        return float(sum(w * (len(x) - np.searchsorted(x, x.dtype.type(c), side="left"))
                         / len(x) for x, w in zip(strata, weights, strict=True) if len(x)))

    out = np.empty(len(probabilities))
    for i, p in enumerate(probabilities):
        lo, hi = -1.0, 1.0
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if share(mid) > 1.0 - p else (lo, mid)
        out[i] = 0.5 * (lo + hi)
    return out


def impostor_quantiles(populations: list[Population], probabilities: np.ndarray,
                       people: int, sharing: int, rng: np.random.Generator) -> np.ndarray:
    """Quantiles of the impostor cosine (one visit each of two different people) over
    `populations`, by stratum: for each number k of shared look-alike levels, the pairs
    of all pairs of `people` fresh people that share k, pooled with `sharing` more pairs
    per population made to share k (k >= 1), weighted by how often two people share k."""
    strata: list[list[np.ndarray]] = [[] for _ in range(len(BRANCHING) + 1)]
    for population in populations:
        crowd = population.fresh_people(people, rng)
        scores, levels = _upper_pairs(population.visits(crowd, rng), crowd.leaf)
        for k, found in enumerate(strata):
            found.append(scores[levels == k])
            if k > 0 and sharing:
                first, second = population.pairs_sharing(k, sharing, rng)
                found.append(np.einsum("ij,ij->i", population.visits(first, rng),
                                       population.visits(second, rng)))
    pooled = [np.sort(np.concatenate(found)) for found in strata]
    return _mixture_quantiles(pooled, _level_probabilities(), probabilities)


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
    for _, block, upper in _upper_bands(t, chunk):
        scores = np.sort(block[upper])
        counts += len(scores) - np.searchsorted(scores, thresholds, side="left")
    return counts, people * (people - 1) // 2


@dataclass(frozen=True)
class SampledTail:
    """The synthetic people's own impostor tail: the share of pairs at or above each of
    `cosines`, counted over all pairs of fresh people (one visit each). A crowd study
    adds up what it predicts beside what the measured table predicts: where the two
    differ, the synthetic people do not copy the table (docs/simulator.md)."""

    cosines: np.ndarray
    shares: np.ndarray
    pairs: int

    def per_visit_wrongful_refusal(self, threshold: float, live: int) -> float:
        """As `SimilarityTable.per_visit_wrongful_refusal`, with the sampled share."""
        return any_of(float(np.interp(threshold, self.cosines, self.shares)), live)


# The sampled tail's grid: every 0.002 of cosine (the rule's thresholds fall between).
_TAIL_GRID = np.round(np.arange(-1.0, 1.0 + 1e-9, 0.002), 3)


def sampled_tail(population: Population, people: int,
                 rng: np.random.Generator) -> SampledTail:
    """`SampledTail` over all pairs of `people` fresh people of `population`."""
    counts, pairs = impostor_tail_counts(population, people, _TAIL_GRID, rng)
    return SampledTail(_TAIL_GRID, counts / pairs, pairs)


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

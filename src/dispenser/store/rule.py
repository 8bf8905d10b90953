"""The decision rule: how similar a face must be to a live template before paper is refused.

Why the threshold moves. A stranger is compared with every template in the deny window.
If one comparison of two different people scores at or above a cosine `t` with
probability far(t) (the embedder's pairwise false-match rate), a stranger facing N live
templates is wrongly matched with probability about 1 - (1 - far(t))^N. Keeping that
per-visit chance under a target p therefore needs far(t) <= f = 1 - (1 - p)^(1/N): the
more templates are live, the stricter the threshold. `threshold_for` solves that for t
from the impostor tail measured on the worst demographic group (the `[calibration]` table
of the embedder's model card), never below the card's floor nor above its ceiling
(docs/vision.md, "The decision rule", derives it with a worked table that
`python -m dispenser.store.rule_table` prints).

Two thresholds, three outcomes (`MatchRule.thresholds`):

    best match >= certain            refuse (the person was served in the deny window)
    likely <= best match < certain   a shorter ribbon: a residual false match costs a
                                     stranger part of a ribbon, never all of it
    best match < likely              the full ribbon

`likely` is the same derivation at the looser target `match.max_false_short`.
`match.threshold` and `match.likely_threshold` are optional fixed overrides.

While the configured embedder's card has no `[calibration]` table, the rule uses the card's
provisional fixed `[threshold] cosine` and has no short-ribbon band (`MatchRule.describe`
says so in the start log line).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from dispenser.embedders import embedder_card, read_card
from dispenser.errors import DispenserError

if TYPE_CHECKING:
    from dispenser.config import MatchSettings, Settings

# Bounded search (doubling steps from one ulp) for a cosine at which the inverse meets its
# target: rounding in the closed form can leave it a few ulps short.
_MAX_NUDGES = 64
_STATUSES = ("measured", "provisional")


def is_match(score: float, threshold: float) -> bool:
    """The one pairwise rule: two templates are the same person when score >= threshold."""
    return score >= threshold


def pairwise_target(per_visit: float, live_count: int) -> float:
    """f = 1 - (1 - p)^(1/N), N = max(live_count, 1): the pairwise false-match rate that
    keeps the chance of wrongly matching a stranger against N templates at p."""
    n = max(int(live_count), 1)
    return -math.expm1(math.log1p(-per_visit) / n)


def _card_error(card: str, key: str, what: str) -> DispenserError:
    return DispenserError(f"model card {card}.toml: [calibration] {key} {what}")


def _number_list(table: Mapping[str, Any], card: str, key: str) -> tuple[float, ...]:
    values = table.get(key)
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, int | float) and not isinstance(v, bool)
                       and math.isfinite(v) for v in values)):
        raise _card_error(card, key, "must be a non-empty list of finite numbers")
    return tuple(float(v) for v in values)


def _number(table: Mapping[str, Any], card: str, key: str) -> float:
    value = table.get(key)
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value)):
        raise _card_error(card, key, f"must be a finite number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class ImpostorTail:
    """The worst group's measured impostor tail from a card's `[calibration]` table.

    far(t) is the share of different-person pairs scoring >= t. Between the measured
    points log10(far) is linear in the cosine; beyond the last point it falls by
    `decades_per_0_1` per +0.1; below the first point it stays at the first point's far.
    """

    card: str
    status: str
    worst_group: str
    cosine: tuple[float, ...]
    far: tuple[float, ...]
    decades_per_0_1: float
    floor: float
    ceiling: float

    @classmethod
    def from_table(cls, table: Any, card: str) -> ImpostorTail:
        """Parse and check a `[calibration]` table; one line naming the card and key."""
        if not isinstance(table, dict):
            raise DispenserError(f"model card {card}.toml: [calibration] must be a table")
        status = table.get("status")
        if status not in _STATUSES:
            raise _card_error(card, "status", f"must be one of {', '.join(_STATUSES)}, "
                                              f"not {status!r}")
        group = table.get("worst_group")
        if not isinstance(group, str) or not group:
            raise _card_error(card, "worst_group", "must name the measured group")
        cosine = _number_list(table, card, "tail_cosine")
        far = _number_list(table, card, "tail_far")
        if len(far) != len(cosine):
            raise _card_error(card, "tail_far", f"has {len(far)} values, tail_cosine "
                                                f"{len(cosine)}")
        if any(b <= a for a, b in itertools.pairwise(cosine)) or not all(
                -1.0 <= c <= 1.0 for c in cosine):
            raise _card_error(card, "tail_cosine", "must be strictly increasing in [-1, 1]")
        if any(b >= a for a, b in itertools.pairwise(far)) or not all(
                0.0 < x <= 1.0 for x in far):
            raise _card_error(card, "tail_far", "must be strictly decreasing in (0, 1]")
        decades = _number(table, card, "tail_decades_per_0_1")
        if decades <= 0.0:
            raise _card_error(card, "tail_decades_per_0_1", f"must be > 0, not {decades!r}")
        floor, ceiling = _number(table, card, "floor"), _number(table, card, "ceiling")
        if not -1.0 <= floor <= ceiling <= 1.0:
            raise _card_error(card, "floor", f"and ceiling must satisfy -1 <= floor <= "
                                             f"ceiling <= 1 (got {floor!r}, {ceiling!r})")
        return cls(card, status, group, cosine, far, decades, floor, ceiling)

    @functools.cached_property
    def _log_far(self) -> tuple[float, ...]:
        return tuple(math.log10(x) for x in self.far)

    def far_at(self, cosine: float) -> float:
        """The pairwise false-match rate at `cosine` (interpolated / extrapolated)."""
        c, logs = self.cosine, self._log_far
        if cosine <= c[0]:
            return self.far[0]
        if cosine >= c[-1]:
            return float(10.0 ** (logs[-1] - self.decades_per_0_1 * (cosine - c[-1]) / 0.1))
        i = bisect.bisect_right(c, cosine) - 1
        slope = (logs[i + 1] - logs[i]) / (c[i + 1] - c[i])
        return float(10.0 ** (logs[i] + slope * (cosine - c[i])))

    def cosine_for(self, far: float) -> float:
        """The smallest cosine t with far_at(t) <= `far` (unclamped; -inf when every
        cosine qualifies, i.e. `far` >= the first measured point's)."""
        if far >= self.far[0]:
            return -math.inf
        c, logs, target = self.cosine, self._log_far, math.log10(far)
        i = next((i for i in range(len(c) - 1) if self.far[i + 1] <= far), None)
        if i is None:
            t = c[-1] + 0.1 * (logs[-1] - target) / self.decades_per_0_1
        else:
            t = c[i] + (target - logs[i]) * (c[i + 1] - c[i]) / (logs[i + 1] - logs[i])
        step = math.ulp(t)
        for _ in range(_MAX_NUDGES):  # rounding can leave far_at(t) a hair above `far`
            if self.far_at(t) <= far:
                break
            t, step = t + step, 2.0 * step
        return t

    def clamp(self, cosine: float) -> float:
        return min(max(cosine, self.floor), self.ceiling)


class Thresholds(NamedTuple):
    """The two cosines a decision compares its best match with (likely <= certain)."""

    likely: float
    certain: float


class ThresholdRule(Protocol):
    """What the store asks on every decision; `MatchRule` is the one the program uses,
    tests may pass their own."""

    def thresholds(self, live_count: int) -> Thresholds:
        """(likely, certain) when `live_count` templates are in the deny window."""
        ...


@dataclass(frozen=True)
class MatchRule:
    """Thresholds as a function of the live count (see the module docstring).

    With a `tail`, each threshold is derived from its per-visit target unless fixed by
    `threshold` / `likely_threshold`. Without one (an uncalibrated card, or a fixed rule
    for tests and simulator sweeps) `threshold` must be given and `likely` defaults to it,
    so there is no short-ribbon band. `likely` never exceeds `certain`.
    """

    tail: ImpostorTail | None
    max_false_refusal: float = 0.001
    max_false_short: float = 0.02
    threshold: float | None = None
    likely_threshold: float | None = None
    provisional: bool = False  # `threshold` is an uncalibrated card's provisional value

    def __post_init__(self) -> None:
        if self.tail is None and self.threshold is None:
            raise DispenserError("match: without a calibrated card, match.threshold must be "
                                 "set")
        for key, value in (("threshold", self.threshold),
                           ("likely_threshold", self.likely_threshold)):
            if value is not None and self.tail is not None and value < self.tail.floor:
                raise DispenserError(
                    f"config: match.{key} = {value!r} is below the floor {self.tail.floor!r} "
                    f"of model card {self.tail.card}.toml (it would refuse most strangers)")

    @classmethod
    def fixed(cls, certain: float, likely: float | None = None) -> MatchRule:
        """A rule that ignores the live count (store tests, simulator threshold sweeps)."""
        return cls(tail=None, threshold=certain, likely_threshold=likely)

    def certain(self, live_count: int) -> float:
        """Refuse at or above this cosine, with `live_count` templates in the deny window."""
        if self.threshold is not None:
            return self.threshold
        assert self.tail is not None  # __post_init__ guarantees one of the two
        return self.tail.clamp(self.tail.cosine_for(
            pairwise_target(self.max_false_refusal, live_count)))

    def likely(self, live_count: int) -> float:
        """Give the shorter ribbon at or above this cosine (and below `certain`)."""
        return self._likely(live_count, self.certain(live_count))

    def _likely(self, live_count: int, certain: float) -> float:
        if self.likely_threshold is not None:
            return min(self.likely_threshold, certain)
        if self.tail is None:
            return certain
        derived = self.tail.clamp(self.tail.cosine_for(
            pairwise_target(self.max_false_short, live_count)))
        return min(derived, certain)

    def thresholds(self, live_count: int) -> Thresholds:
        """Both thresholds for `live_count`: what the store calls on every decision."""
        certain = self.certain(live_count)
        return Thresholds(self._likely(live_count, certain), certain)

    def describe(self) -> str:
        """One line for the start log: where the thresholds come from."""
        if self.provisional:
            assert self.tail is None and self.threshold is not None
            return (f"fixed threshold {self.threshold:g}: the embedder card has no "
                    "[calibration] table, so its provisional threshold applies and there is "
                    "no short-ribbon band (set match.threshold to override)")
        if self.tail is None:
            return f"fixed threshold {self.threshold:g}, likely {self.likely(1):g}"
        certain = ("fixed at match.threshold " + f"{self.threshold:g}"
                   if self.threshold is not None else
                   f"derived for max_false_refusal {self.max_false_refusal:g}")
        return (f"certain threshold {certain}, likely for max_false_short "
                f"{self.max_false_short:g}, from {self.tail.status} impostor tail of group "
                f"{self.tail.worst_group!r} in {self.tail.card}.toml")


@functools.cache
def card_tail(card: str) -> ImpostorTail | None:
    """The parsed `[calibration]` of packaged card `card`, None if it has none (cached:
    each card is read and checked once per process)."""
    table = read_card(card).get("calibration")
    return None if table is None else ImpostorTail.from_table(table, card)


def _provisional_threshold(card: str) -> float:
    table = read_card(card).get("threshold")
    value = table.get("cosine") if isinstance(table, dict) else None
    if not (isinstance(value, int | float) and not isinstance(value, bool)
            and -1.0 <= value <= 1.0):
        raise DispenserError(f"model card {card}.toml has no [calibration] table and no "
                             "[threshold] cosine: set match.threshold")
    return float(value)


@functools.lru_cache(maxsize=16)
def _rule(match: MatchSettings, embedder: str, precision: str) -> MatchRule:
    card = embedder_card(embedder, precision)
    tail = card_tail(card)
    provisional = tail is None and match.threshold is None
    return MatchRule(
        tail=tail, max_false_refusal=match.max_false_refusal,
        max_false_short=match.max_false_short,
        threshold=_provisional_threshold(card) if provisional else match.threshold,
        likely_threshold=match.likely_threshold, provisional=provisional)


def rule_for(settings: Settings) -> MatchRule:
    """The rule `settings` configure (`[match]` and the card of the model that runs:
    `vision.embedder` at `vision.embedder_precision`)."""
    return _rule(settings.match, settings.vision.embedder, settings.vision.embedder_precision)


def threshold_for(live_count: int, settings: Settings) -> float:
    """The "certain" threshold: refuse paper at or above this cosine when `live_count`
    templates are in the deny window. Never falls as the count rises, never leaves the
    card's [floor, ceiling]; `match.threshold`, if set, is returned as is."""
    return rule_for(settings).certain(live_count)


def likely_threshold_for(live_count: int, settings: Settings) -> float:
    """The "likely" threshold: a best match at or above it (and below `threshold_for`)
    gives the shorter ribbon. Always <= threshold_for(live_count, settings)."""
    return rule_for(settings).likely(live_count)

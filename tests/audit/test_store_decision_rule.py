"""The store applies the decision rule (invariants 1, 4 and 8 in docs/privacy.md).

Three outcomes: refuse at or above the certain threshold, the shorter ribbon between the
likely and the certain one (the template is admitted like a normal dispense, so a second
repeat is refused), the full ribbon below. The thresholds are asked for the live count:
the LIVE entries served less than the deny window ago, exactly the ones a probe is
compared with."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.store import MatchRule, TemplateStore, Thresholds, Verdict
from dispenser.store.rule import ImpostorTail

Make = Callable[..., TemplateStore]
Template = Callable[[int], np.ndarray]
Serve = Callable[[TemplateStore, np.ndarray], None]

LIKELY, CERTAIN = 0.80, 0.93


def near(person: np.ndarray, cosine: float, seed: int = 99) -> np.ndarray:
    """A unit probe whose cosine with `person` is `cosine`."""
    other = np.random.default_rng(seed).standard_normal(person.shape[0])
    other -= float(other @ person) * person
    other /= np.linalg.norm(other)
    probe = (cosine * person + np.sqrt(1 - cosine**2) * other).astype(np.float32)
    probe /= np.linalg.norm(probe)
    return probe


class RecordingRule:
    """A fixed rule that remembers the live count of every decision."""

    def __init__(self, likely: float = LIKELY, certain: float = CERTAIN) -> None:
        self.fixed = Thresholds(likely, certain)
        self.counts: list[int] = []

    def thresholds(self, live_count: int) -> Thresholds:
        self.counts.append(live_count)
        return self.fixed


@pytest.mark.parametrize(("cosine", "verdict"), [(0.95, Verdict.DENY), (0.93, Verdict.DENY),
                                                 (0.85, Verdict.SHORT), (0.80, Verdict.SHORT),
                                                 (0.78, Verdict.DISPENSE)])
def test_the_best_match_picks_one_of_three_outcomes(cosine: float, verdict: Verdict,
                                                    make_store: Make, template: Template,
                                                    serve: Serve) -> None:
    store = make_store(rule=MatchRule.fixed(CERTAIN, likely=LIKELY))
    person = template(1)
    serve(store, person)
    # 1e-4 inside the band: exactly at a threshold float32 rounding decides.
    inside = cosine + (1e-4 if cosine in (CERTAIN, LIKELY) else 0.0)
    decision = store.decide(near(person, inside))
    assert decision.verdict is verdict and decision.live_count == 1
    assert (decision.reservation is None) == (verdict is Verdict.DENY)


def test_a_short_ribbon_admits_the_template_so_a_second_repeat_is_refused(
        make_store: Make, template: Template, serve: Serve) -> None:
    store = make_store(rule=MatchRule.fixed(CERTAIN, likely=LIKELY))
    serve(store, template(1))
    probe = near(template(1), 0.85)
    short = store.decide(probe.copy())
    assert short.verdict is Verdict.SHORT and short.reservation is not None
    assert store.commit(short.reservation)
    again = store.decide(probe.copy())
    assert again.verdict is Verdict.DENY and again.live_count == 2
    c = store.counters()
    assert (c.decisions, c.shorts, c.denials, c.admits, c.commits) == (3, 1, 1, 2, 2)


def test_a_failed_short_dispense_leaves_nothing_behind(
        make_store: Make, template: Template, serve: Serve,
        nonzero_rows: Callable[[TemplateStore], int]) -> None:
    """Invariant 4 for the shorter ribbon: rolled back, the person is not refused later."""
    store = make_store(rule=MatchRule.fixed(CERTAIN, likely=LIKELY))
    serve(store, template(1))
    probe = near(template(1), 0.85)
    short = store.decide(probe.copy())
    assert short.reservation is not None and store.rollback(short.reservation)
    assert nonzero_rows(store) == 1 and store.counters().occupancy == 1
    retry = store.decide(probe.copy())
    assert retry.verdict is Verdict.SHORT  # not DENY: the failed attempt left no template


def test_the_live_count_is_the_entries_in_the_deny_window(
        clock: VirtualClock, make_store: Make, template: Template, serve: Serve) -> None:
    rule = RecordingRule()
    store = make_store(rule=rule, deny_window_s=100.0, retention_s=200.0)
    serve(store, template(1))                       # live, will age out of the window
    clock.advance(50.0)
    serve(store, template(2))
    serve(store, template(3))
    pending = store.decide(template(4))             # reserved, not yet served: not live
    assert pending.reservation is not None
    clock.advance(50.0)                             # template 1 is exactly 100 s old now
    decision = store.decide(template(5))
    assert rule.counts == [0, 1, 2, 3, 2]
    assert decision.live_count == 2


def test_only_an_entry_younger_than_the_deny_window_can_refuse(
        clock: VirtualClock, make_store: Make, template: Template, serve: Serve) -> None:
    """Invariant 1 holds whatever the rule: even a rule that calls every pair a match
    cannot refuse anyone once the entry has reached the deny window."""
    store = make_store(rule=MatchRule.fixed(-1.0), deny_window_s=100.0, retention_s=200.0)
    serve(store, template(1))
    clock.advance(99.999)
    assert store.decide(template(2)).verdict is Verdict.DENY
    clock.advance(0.001)
    decision = store.decide(template(1))
    assert decision.verdict is Verdict.DISPENSE and decision.live_count == 0


def test_invariant_8_the_refusal_threshold_rises_with_the_live_count(
        make_store: Make, template: Template, serve: Serve) -> None:
    """A match that would refuse a stranger facing one live template must not refuse one
    facing a crowd: the store asks the rule for the current live count. (If it asked for a
    fixed count, the crowded store would refuse too.)"""
    tail = ImpostorTail.from_table({
        "status": "measured", "worst_group": "test", "tail_cosine": [0.30, 0.35, 0.40, 0.45],
        "tail_far": [1.0e-2, 3.0e-3, 8.0e-4, 2.0e-4], "tail_decades_per_0_1": 1.5,
        "floor": 0.40, "ceiling": 0.95}, "test_card")
    rule = MatchRule(tail)
    crowd = 200
    one, many = rule.thresholds(1), rule.thresholds(crowd)
    score = (one.certain + many.likely) / 2
    assert one.certain < score < many.certain
    person = template(1)
    alone = make_store(rule=rule, capacity=crowd + 8)
    serve(alone, person)
    assert alone.decide(near(person, score)).verdict is Verdict.DENY
    crowded = make_store(rule=rule, capacity=crowd + 8)
    serve(crowded, person)
    for seed in range(1000, 1000 + crowd - 1):
        serve(crowded, template(seed))
    decision = crowded.decide(near(person, score))
    assert decision.live_count == crowd and decision.verdict is not Verdict.DENY

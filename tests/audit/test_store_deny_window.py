"""Invariant 1 (deny window) and invariant 4 (denied probes are not stored).

An identical probe is refused while the entry is younger than `deny_window` and served
again from exactly `deny_window` on; a refusal stores nothing and does not restart the
person's wait.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.config import StoreSettings
from dispenser.store import MatchRule, TemplateStore

EPS = 1e-6


def test_same_face_is_denied_just_before_the_deny_window_ends(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None]) -> None:
    store = make_store(deny_window_s=540.0)
    serve(store, template(1))
    clock.advance(540.0 - EPS)
    decision = store.decide(template(1))
    assert not decision.dispense
    assert decision.reservation is None


def test_same_face_is_served_again_at_exactly_the_deny_window(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None]) -> None:
    store = make_store(deny_window_s=540.0)
    serve(store, template(1))
    clock.advance(540.0)
    assert store.decide(template(1)).dispense


def test_deny_window_counts_from_the_commit_not_the_decision(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray]) -> None:
    store = make_store(deny_window_s=100.0, retention_s=200.0)
    decision = store.decide(template(1))
    assert decision.reservation is not None
    clock.advance(10.0)  # the motor takes its time
    assert store.commit(decision.reservation)
    clock.advance(100.0 - EPS)
    assert not store.decide(template(1)).dispense
    clock.advance(EPS)
    assert store.decide(template(1)).dispense


def test_a_different_face_is_served(make_store: Callable[..., TemplateStore],
                                    template: Callable[[int], np.ndarray],
                                    serve: Callable[..., None]) -> None:
    store = make_store()
    serve(store, template(1))
    decision = store.decide(template(2))
    assert decision.dispense
    assert decision.best_similarity is not None and decision.best_similarity < 0.5


def test_a_reserved_but_uncommitted_entry_denies_nobody(
        make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray]) -> None:
    store = make_store()
    first = store.decide(template(1))
    assert first.dispense
    assert store.decide(template(1)).dispense  # paper not confirmed yet: fail open


def test_a_reserved_entry_denies_nobody_even_right_after_boot(
        template: Callable[[int], np.ndarray]) -> None:
    """Shortly after boot the clock reads less than the deny window: only the state, not
    the (zero) commit time, may keep a reserved entry out of the comparison."""
    with TemplateStore(StoreSettings(), rule=MatchRule.fixed(0.93), clock=VirtualClock(10.0),
                       start_sweeper=False) as store:
        assert store.decide(template(1)).dispense
        assert store.decide(template(1)).dispense


def test_denied_probe_is_not_stored(make_store: Callable[..., TemplateStore],
                                    template: Callable[[int], np.ndarray],
                                    serve: Callable[..., None],
                                    nonzero_rows: Callable[[TemplateStore], int]) -> None:
    store = make_store()
    serve(store, template(1))
    before = store.counters()
    assert not store.decide(template(1)).dispense
    after = store.counters()
    assert after.occupancy == before.occupancy == 1
    assert after.admits == before.admits
    assert nonzero_rows(store) == 1  # raw buffer: still only the served person's row


def test_denial_does_not_refresh_the_entry_time(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    store = make_store(deny_window_s=540.0)
    serve(store, template(1))
    served_at = raw(store)["served"].copy()
    born_at = raw(store)["born"].copy()
    for _ in range(5):  # tries again every 100 s
        clock.advance(100.0)
        assert not store.decide(template(1)).dispense
    assert np.array_equal(raw(store)["served"], served_at)
    assert np.array_equal(raw(store)["born"], born_at)
    clock.advance(40.0)  # 540 s after being served, whatever the attempts in between
    assert store.decide(template(1)).dispense


@pytest.mark.parametrize("similarity_offset", [-1e-4, 1e-4])
def test_threshold_separates_same_from_different(similarity_offset: float,
                                make_store: Callable[..., TemplateStore],
                                template: Callable[[int], np.ndarray],
                                serve: Callable[..., None]) -> None:
    """Just above the threshold is the same person, just below is not. (Exactly at it is
    decided by float32 rounding, which the random rotation makes vary by 1e-6.)"""
    first = template(1)
    # probe = cos(a) * first + sin(a) * (unit vector orthogonal to first)
    other = template(2) - float(template(2) @ first) * first
    other /= np.linalg.norm(other)
    target = 0.8 + similarity_offset
    probe = (target * first + np.sqrt(1 - target**2) * other).astype(np.float32)
    probe /= np.linalg.norm(probe)
    store = make_store(threshold=0.8)
    serve(store, first)
    decision = store.decide(probe)
    assert decision.dispense == (similarity_offset < 0)

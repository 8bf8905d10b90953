"""Invariant 4 (a failed dispense leaves nothing behind) and 7 (bounded: a full store
evicts the oldest entry, zeroised, and fails open), plus the configuration ceilings."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.config import RETENTION_CEILING_S, StoreSettings
from dispenser.errors import ConfigError
from dispenser.store import TemplateStore


def test_rollback_zeroises_the_reserved_slot(
        make_store: Callable[..., TemplateStore], template: Callable[[int], np.ndarray],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    store = make_store()
    decision = store.decide(template(1))
    assert decision.reservation is not None
    assert np.any(raw(store)["rows"])
    assert store.rollback(decision.reservation)  # the paper jammed
    for name in ("rows", "born", "served", "seq", "state"):
        assert not np.any(raw(store)[name]), name
    assert store.counters().rollbacks == 1


def test_rolled_back_person_is_not_denied_later(
        make_store: Callable[..., TemplateStore], template: Callable[[int], np.ndarray]) -> None:
    store = make_store()
    decision = store.decide(template(1))
    assert decision.reservation is not None
    store.rollback(decision.reservation)
    assert store.decide(template(1)).dispense


def test_a_reservation_resolves_once(make_store: Callable[..., TemplateStore],
                                     template: Callable[[int], np.ndarray]) -> None:
    store = make_store()
    decision = store.decide(template(1))
    assert decision.reservation is not None
    assert store.commit(decision.reservation)
    assert not store.rollback(decision.reservation)  # a committed entry stays until retention
    assert not store.commit(decision.reservation)
    assert store.counters().occupancy == 1


def test_full_store_evicts_and_zeroises_the_oldest_and_fails_open(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    store = make_store(capacity=3)
    for person in range(3):
        serve(store, template(person))
        clock.advance(1.0)
    oldest = int(np.argmin(np.where(raw(store)["seq"] > 0, raw(store)["seq"], np.inf)))
    serve(store, template(99))  # a stranger is served although the store is full
    counters = store.counters()
    assert counters.evictions == 1
    assert counters.occupancy == 3
    assert raw(store)["born"][oldest] == clock.now()  # the oldest slot was reused ...
    assert not store.decide(template(1)).dispense  # (denials store nothing, evict nothing)
    assert not store.decide(template(2)).dispense
    assert store.decide(template(0)).dispense  # ... and person 0 is forgotten


def test_eviction_zeroises_before_reuse(
        make_store: Callable[..., TemplateStore], template: Callable[[int], np.ndarray],
        serve: Callable[..., None], raw: Callable[[TemplateStore], dict[str, np.ndarray]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The evicted row is overwritten with zeros before anything else happens to it."""
    from dispenser.store import kernels

    store = make_store(capacity=1)
    serve(store, template(1))
    seen: list[bool] = []
    real_seal = kernels.seal_row

    def spy(key: np.ndarray, vector: np.ndarray, scratch: np.ndarray, out: np.ndarray) -> None:
        seen.append(not np.any(out) and not np.any(raw(store)["born"]))
        real_seal(key, vector, scratch, out)

    monkeypatch.setattr(kernels, "seal_row", spy)
    serve(store, template(2))
    assert seen == [True]


def test_retention_can_never_exceed_the_ceiling() -> None:
    assert RETENTION_CEILING_S == 600.0
    with pytest.raises(ConfigError, match=r"store\.retention_s"):
        StoreSettings(retention_s=600.001)
    with pytest.raises(ConfigError, match="deny_window_s"):
        StoreSettings(deny_window_s=500.0, retention_s=400.0)


def test_configured_shorter_retention_is_honoured(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        nonzero_rows: Callable[[TemplateStore], int]) -> None:
    store = make_store(retention_s=120.0, deny_window_s=60.0)
    serve(store, template(1))
    clock.advance(120.0)
    assert store.sweep() == 1
    assert nonzero_rows(store) == 0


def test_capacity_is_fixed_at_construction(
        make_store: Callable[..., TemplateStore], template: Callable[[int], np.ndarray],
        serve: Callable[..., None], raw: Callable[[TemplateStore], dict[str, np.ndarray]]
) -> None:
    store = make_store(capacity=4)
    rows = raw(store)["rows"]
    for person in range(20):
        serve(store, template(person))
    after = raw(store)["rows"]  # a new view: the same memory, not a grown copy
    assert after.ctypes.data == rows.ctypes.data and after.shape == rows.shape == (4, 128)
    assert store.counters().evictions == 16

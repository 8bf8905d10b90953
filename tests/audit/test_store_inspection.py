"""The store's inspection seams for auditors and benchmarks: read-only views of its raw
buffers (`raw_buffers`) and an O(n) bulk admission (`preload`) that keeps every rule."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.errors import DispenserError
from dispenser.store import TemplateStore


def _faces(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def test_raw_buffers_refuse_writes(make_store: Callable[..., TemplateStore],
                                   template: Callable[[int], np.ndarray],
                                   serve: Callable[..., None]) -> None:
    store = make_store()
    serve(store, template(1))
    raw = store.raw_buffers()
    for name in ("rows", "state", "born", "served", "seq", "slot_key", "rotated", "keys",
                 "key_epoch", "key_refs", "key_scratch"):
        with pytest.raises(ValueError, match="read-only"):
            getattr(raw, name).flat[0] = 1
    assert store.decide(template(1).copy()).dispense is False  # the store is untouched


def test_raw_buffers_follow_the_store(clock: VirtualClock,
                                      make_store: Callable[..., TemplateStore],
                                      template: Callable[[int], np.ndarray],
                                      serve: Callable[..., None]) -> None:
    store = make_store()
    raw = store.raw_buffers()
    serve(store, template(1))
    assert raw.rows.any() and raw.keys.any()
    clock.advance(store.settings.retention_s)
    store.sweep()
    assert not raw.rows.any() and not raw.keys.any()  # the same views, now zeros


def test_preload_admits_live_entries_that_refuse_their_faces(
        clock: VirtualClock, make_store: Callable[..., TemplateStore]) -> None:
    store = make_store(capacity=64)
    faces = _faces(80)
    assert store.preload(faces[:64]) == 0
    c = store.counters()
    assert (c.occupancy, c.admits, c.commits, c.decisions) == (64, 64, 64, 0)
    assert not store.decide(faces[10].copy()).dispense
    assert store.decide(faces[70].copy()).dispense
    clock.advance(store.settings.retention_s)
    store.sweep()
    assert not store.raw_buffers().rows.any()


def test_preload_into_a_full_store_evicts_the_oldest(
        make_store: Callable[..., TemplateStore]) -> None:
    store = make_store(capacity=8)
    faces = _faces(10)
    assert store.preload(faces) == 2
    assert store.counters().evictions == 2
    assert store.decide(faces[0].copy()).dispense  # evicted: served again
    assert not store.decide(faces[9].copy()).dispense


def test_preload_refuses_templates_that_are_not_normalised(
        make_store: Callable[..., TemplateStore]) -> None:
    store = make_store()
    faces = _faces(3)
    faces[1] *= 2.0
    with pytest.raises(DispenserError, match="not L2-normalised"):
        store.preload(faces)
    with pytest.raises(DispenserError, match=r"shape \(n, 128\)"):
        store.preload(faces[:, :64].copy())
    assert store.counters().occupancy == 0

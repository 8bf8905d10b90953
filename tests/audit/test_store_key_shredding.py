"""Key shredding: rows are stored sealed by a secret per-epoch orthogonal transform,
matching is unchanged, and an epoch's key is overwritten with zeros as soon as its last
entry is deleted and the epoch is over (checked on the raw key buffer). The transform's
own properties are in test_store_transform.py."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from dispenser.clock import VirtualClock
from dispenser.store import TemplateStore
from dispenser.store.transform import seal_numpy

Raw = Callable[[TemplateStore], dict[str, np.ndarray]]


def _live_keys(raw: dict[str, np.ndarray]) -> set[int]:
    return {k for k in range(raw["keys"].shape[0]) if np.any(raw["keys"][k])}


def test_rotation_costs_no_accuracy(clock: VirtualClock,
                                    make_store: Callable[..., TemplateStore]) -> None:
    """Decisions equal those of an unrotated float64 reference for probes spread around
    the threshold; the similarity differs by float32 rounding only."""
    rng = np.random.default_rng(7)
    store = make_store(capacity=512, key_epoch_s=10.0)
    people = rng.standard_normal((300, 128))
    people /= np.linalg.norm(people, axis=1, keepdims=True)
    for person in people:  # admitted over 300 s: about 30 epoch keys in use
        d = store.decide(person.astype(np.float32))
        assert d.reservation is not None
        store.commit(d.reservation)
        clock.advance(1.0)
    worst = 0.0
    for i in range(600):
        # a probe at a chosen similarity to one stored person, in [0.88, 0.98]
        target = float(rng.uniform(0.88, 0.98))
        base = people[i % len(people)]
        noise = rng.standard_normal(128)
        noise -= (noise @ base) * base
        noise /= np.linalg.norm(noise)
        probe64 = target * base + math.sqrt(1 - target**2) * noise
        probe = probe64.astype(np.float32)
        probe /= np.linalg.norm(probe)
        expected = float(np.max(people @ probe.astype(np.float64)))
        decision = store.decide(probe, keep_probe=True)
        assert decision.best_similarity is not None
        worst = max(worst, abs(decision.best_similarity - expected))
        certain = store.rule.thresholds(decision.live_count).certain
        if abs(expected - certain) > 1e-5:
            assert decision.dispense == (expected < certain)
        if decision.reservation is not None:
            store.rollback(decision.reservation)
    assert worst < 1e-5


def test_rows_are_stored_rotated_not_in_the_clear(
        make_store: Callable[..., TemplateStore], template: Callable[[int], np.ndarray],
        serve: Callable[..., None], raw: Raw) -> None:
    store = make_store()
    serve(store, template(1))
    b = raw(store)
    slot = int(np.flatnonzero(b["state"])[0])
    row = b["rows"][slot]
    assert abs(float(row @ template(1))) < 0.5  # the stored row does not look like the face
    key = b["keys"][store.raw_buffers().slot_key[slot]].astype(np.float64)
    sealing = seal_numpy(key, np.eye(128)).T  # the key as a (128, 128) matrix
    assert np.allclose(sealing.T @ row, template(1), atol=1e-5)  # the key undoes it


def test_keys_are_orthogonal_secret_and_differ_per_epoch(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None], raw: Raw) -> None:
    store = make_store(key_epoch_s=60.0)
    serve(store, template(1))
    clock.advance(60.0)
    serve(store, template(2))
    live = sorted(_live_keys(raw(store)))
    assert len(live) == 2
    first, second = (seal_numpy(raw(store)["keys"][k].astype(np.float64), np.eye(128)).T
                     for k in live)
    assert np.allclose(first.T @ first, np.eye(128), atol=1e-5)
    assert np.allclose(second.T @ second, np.eye(128), atol=1e-5)
    assert not np.allclose(first, second, atol=0.1)
    other = make_store(key_epoch_s=60.0)  # another store (another boot) gets other keys
    serve(other, template(1))
    (k,) = _live_keys(raw(other))
    assert not np.allclose(seal_numpy(raw(other)["keys"][k].astype(np.float64),
                                      np.eye(128)).T, first, atol=0.1)


def test_epoch_key_is_zeroised_when_its_last_entry_is_deleted(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None], raw: Raw) -> None:
    store = make_store(key_epoch_s=60.0, retention_s=600.0)
    serve(store, template(1))
    serve(store, template(2))  # two entries under the first epoch's key
    (old_key,) = _live_keys(raw(store))
    clock.advance(61.0)
    serve(store, template(3))  # the next epoch
    assert len(_live_keys(raw(store))) == 2
    clock.advance(539.0)  # the first two reach retention, the third is 539 s old
    assert store.sweep() == 2
    assert not np.any(raw(store)["keys"][old_key])  # shredded on the raw buffer
    assert len(_live_keys(raw(store))) == 1
    assert store.counters().keys_shredded == 1
    assert not store.decide(template(3)).dispense  # the surviving epoch still matches


def test_key_is_kept_while_one_entry_of_its_epoch_lives(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None], raw: Raw) -> None:
    store = make_store(key_epoch_s=60.0)
    serve(store, template(1))
    decision = store.decide(template(2))
    assert decision.reservation is not None
    (key,) = _live_keys(raw(store))
    clock.advance(61.0)  # the epoch is over
    store.rollback(decision.reservation)  # one of its two entries goes
    assert np.any(raw(store)["keys"][key])


def test_key_of_a_past_epoch_is_shredded_by_the_rollback_of_its_last_entry(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], raw: Raw) -> None:
    store = make_store(key_epoch_s=60.0, reservation_timeout_s=120.0)
    decision = store.decide(template(1))
    assert decision.reservation is not None
    (key,) = _live_keys(raw(store))
    clock.advance(61.0)
    assert store.rollback(decision.reservation)
    assert not np.any(raw(store)["keys"][key])


def test_current_epoch_key_lives_until_the_epoch_ends(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], raw: Raw) -> None:
    store = make_store(key_epoch_s=60.0)
    start_of_epoch = math.ceil(clock.now() / 60.0) * 60.0
    clock.set(start_of_epoch)
    decision = store.decide(template(1))
    assert decision.reservation is not None
    store.rollback(decision.reservation)  # no entry left, but the epoch is current
    (key,) = _live_keys(raw(store))
    clock.advance(60.0 - 1e-6)
    store.sweep()
    assert np.any(raw(store)["keys"][key])
    clock.advance(1e-6)  # the epoch ends; the next sweep shreds it
    store.sweep()
    assert not np.any(raw(store)["keys"])


def test_live_keys_stay_bounded_by_retention_over_epoch(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None], raw: Raw) -> None:
    store = make_store(key_epoch_s=10.0, retention_s=100.0, deny_window_s=50.0,
                       capacity=64)
    most = 0
    for person in range(400):  # 2000 s of traffic, one person every 5 s
        serve(store, template(person))
        most = max(most, len(_live_keys(raw(store))))
        clock.advance(5.0)
    assert most <= math.ceil(100.0 / 10.0) + 1
    assert raw(store)["keys"].shape[0] == math.ceil(100.0 / 10.0) + 2  # preallocated

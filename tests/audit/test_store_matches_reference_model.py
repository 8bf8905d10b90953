"""Invariants 1, 2, 4 and 7 under random use: hypothesis drives the real store and a
plain-Python reference model (written from the specification, no numba, no rotation, no
ring) with the same random sequences of decisions, commits, rollbacks, sweeps and clock
jumps, under randomly drawn settings. After every step:

- both made the same decisions and hold the same number of entries (same counters);
- on the raw buffers, every slot holding a non-zero byte belongs to an entry the model
  still holds, i.e. no entry older than `retention` has a single non-zero byte left;
  free slots are all zeros; the rotated-probe scratch is zero; no key outlives its epoch.

The default run is short; `pytest -m slow` runs the long version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from dispenser.clock import VirtualClock
from dispenser.config import StoreSettings
from dispenser.store import MatchRule, Reservation, TemplateStore
from dispenser.store.transform import seal_numpy

DIM = 128
THRESHOLD = 0.93
PEOPLE = 6
# Clock steps that sit on the boundaries of the default settings, plus anything.
BOUNDARY_STEPS = (0.0, 1e-6, 0.5, 1.0, 29.999999, 30.0, 59.999999, 60.0, 539.999999, 540.0,
                  599.999999, 600.0, 3600.0)


def _face(person: int) -> np.ndarray:
    v = np.random.default_rng(person).standard_normal(DIM)
    return v / np.linalg.norm(v)


FACES = [_face(p) for p in range(PEOPLE)]


def _probe(person: int, noise_seed: int) -> np.ndarray:
    """Another capture of `person`: similarity about 0.995 to their face, < 0.5 to others."""
    noise = np.random.default_rng(noise_seed).standard_normal(DIM) * (0.1 / np.sqrt(DIM))
    v = (FACES[person] + noise).astype(np.float32)
    return v / np.linalg.norm(v)


@dataclass(eq=False)  # identity, not field-wise (the fields hold arrays)
class _Entry:
    face: np.ndarray
    born: float
    served: float | None  # None while reserved
    seq: int
    token: int


class ReferenceStore:
    """The specification, executed naively: a list of entries and linear scans."""

    def __init__(self, s: StoreSettings, threshold: float) -> None:
        self.s, self.threshold = s, threshold
        self.entries: list[_Entry] = []
        self.seq = 0
        self.counts = dict.fromkeys(("decisions", "denials", "admits", "commits", "rollbacks",
                                     "timeouts", "sweeps", "deletions", "evictions"), 0)

    def expire(self, now: float) -> int:
        keep, freed = [], 0
        for e in self.entries:
            if now - e.born >= self.s.retention_s:
                self.counts["deletions"] += 1
                freed += 1
            elif e.served is None and now - e.born >= self.s.reservation_timeout_s:
                self.counts["rollbacks"] += 1
                self.counts["timeouts"] += 1
                freed += 1
            else:
                keep.append(e)
        self.entries = keep
        return freed

    def decide(self, probe: np.ndarray, now: float) -> tuple[bool, float | None, int | None]:
        self.expire(now)
        self.counts["decisions"] += 1
        sims = [float(e.face @ probe.astype(np.float64)) for e in self.entries
                if e.served is not None and now - e.served < self.s.deny_window_s]
        best = max(sims) if sims else None
        if best is not None and best >= self.threshold:
            self.counts["denials"] += 1
            return False, best, None
        if len(self.entries) == self.s.capacity:
            self.entries.remove(min(self.entries, key=lambda e: e.seq))
            self.counts["evictions"] += 1
        self.seq += 1
        self.entries.append(_Entry(probe.astype(np.float64), now, None, self.seq, self.seq))
        self.counts["admits"] += 1
        return True, best, self.seq

    def _reserved(self, token: int) -> _Entry | None:
        return next((e for e in self.entries if e.token == token and e.served is None), None)

    def commit(self, token: int, now: float) -> bool:
        self.expire(now)
        entry = self._reserved(token)
        if entry is None:
            return False
        entry.served = now
        self.counts["commits"] += 1
        return True

    def rollback(self, token: int, now: float) -> bool:
        self.expire(now)
        entry = self._reserved(token)
        if entry is None:
            return False
        self.entries.remove(entry)
        self.counts["rollbacks"] += 1
        return True


@st.composite
def _store_settings(draw: st.DrawFn) -> StoreSettings:
    retention = draw(st.sampled_from([600.0, 300.0, 100.0, 7.5]))
    deny = draw(st.sampled_from([retention, retention * 0.9, retention / 3]))
    return StoreSettings(
        retention_s=retention, deny_window_s=deny,
        capacity=draw(st.integers(1, 6)),
        reservation_timeout_s=draw(st.sampled_from([1.0, 30.0, 120.0])),
        key_epoch_s=draw(st.sampled_from([1.0, 7.0, 60.0, 600.0])))


class StoreVersusReference(RuleBasedStateMachine):
    reservations = Bundle("reservations")

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock(1000.0)
        self.store: TemplateStore | None = None
        self.ref: ReferenceStore | None = None

    @initialize(s=_store_settings())
    def build(self, s: StoreSettings) -> None:
        self.store = TemplateStore(s, rule=MatchRule.fixed(THRESHOLD), dim=DIM, clock=self.clock,
                                   start_sweeper=False)
        self.ref = ReferenceStore(s, THRESHOLD)

    def teardown(self) -> None:
        if self.store is not None:
            self.store.close()

    @precondition(lambda self: self.store is not None)
    @rule(target=reservations, person=st.integers(0, PEOPLE - 1),
          noise=st.integers(0, 2**16))
    def decide(self, person: int, noise: int) -> tuple[Reservation | None, int | None]:
        assert self.store is not None and self.ref is not None
        probe = _probe(person, noise)
        expected = self.ref.decide(probe, self.clock.now())
        got = self.store.decide(probe)
        assert got.dispense == expected[0]
        if expected[1] is None:
            assert got.best_similarity is None
        else:
            assert got.best_similarity is not None
            assert abs(got.best_similarity - expected[1]) < 1e-4
        assert not np.any(probe)
        return got.reservation, expected[2]

    @precondition(lambda self: self.store is not None)
    @rule(pair=reservations)
    def commit(self, pair: tuple[Reservation | None, int | None]) -> None:
        assert self.store is not None and self.ref is not None
        reservation, token = pair
        if reservation is not None and token is not None:
            assert self.store.commit(reservation) == self.ref.commit(token, self.clock.now())

    @precondition(lambda self: self.store is not None)
    @rule(pair=reservations)
    def rollback(self, pair: tuple[Reservation | None, int | None]) -> None:
        assert self.store is not None and self.ref is not None
        reservation, token = pair
        if reservation is not None and token is not None:
            assert (self.store.rollback(reservation)
                    == self.ref.rollback(token, self.clock.now()))

    @precondition(lambda self: self.store is not None)
    @rule(dt=st.sampled_from(BOUNDARY_STEPS) | st.floats(0.0, 700.0))
    def time_passes_and_the_sweeper_runs(self, dt: float) -> None:
        assert self.store is not None and self.ref is not None
        self.clock.advance(dt)
        self.ref.counts["sweeps"] += 1
        assert self.store.sweep() == self.ref.expire(self.clock.now())

    @invariant()
    def same_counters(self) -> None:
        if self.store is None or self.ref is None:
            return
        c = self.store.counters()
        for name, value in self.ref.counts.items():
            assert getattr(c, name) == value, name
        assert c.occupancy == len(self.ref.entries)

    @invariant()
    def no_byte_outlives_its_entry(self) -> None:
        """Raw buffers: each non-zero row is a model entry younger than retention."""
        if self.store is None or self.ref is None:
            return
        b = self.store.raw_buffers()
        now = self.clock.now()
        occupied = np.flatnonzero(b.state)
        free = np.flatnonzero(b.state == 0)
        assert not np.any(b.rows[free]) and not np.any(b.born[free])
        assert not np.any(b.served[free]) and not np.any(b.seq[free])
        assert not np.any(b.rotated) and not np.any(b.scratch)
        assert len(occupied) == len(self.ref.entries)
        for slot in occupied:
            assert now - b.born[slot] < self.store.settings.retention_s
            key = b.keys[b.slot_key[slot]].astype(np.float64)
            face = seal_numpy(key, np.eye(DIM)) @ b.rows[slot].astype(np.float64)
            (entry,) = [e for e in self.ref.entries if e.seq == b.seq[slot]]
            assert entry.born == b.born[slot]
            assert (entry.served or 0.0) == b.served[slot]
            assert np.allclose(face, entry.face, atol=1e-4)
        epochs_in_use = {int(b.key_epoch[b.slot_key[s]]) for s in occupied}
        epochs_in_use.add(math.floor(now / self.store.settings.key_epoch_s))
        keys_with_bytes = np.flatnonzero(b.keys.reshape(len(b.keys), -1).any(axis=1))
        assert {int(b.key_epoch[k]) for k in keys_with_bytes} <= epochs_in_use
        assert not np.any(np.delete(b.key_refs, keys_with_bytes))


_QUICK = settings(max_examples=40, stateful_step_count=30, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])

TestStoreMatchesReferenceModel = StoreVersusReference.TestCase
TestStoreMatchesReferenceModel.settings = _QUICK


class LongStoreVersusReference(StoreVersusReference):
    """The same machine, many more and longer runs (soak)."""


TestStoreMatchesReferenceModelLong = pytest.mark.slow(LongStoreVersusReference.TestCase)
TestStoreMatchesReferenceModelLong.settings = settings(
    max_examples=1500, stateful_step_count=100, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])

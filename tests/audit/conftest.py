"""Fixtures for the store's audit tests: stores on a virtual clock, templates, raw buffers.

The audit tests check zeroisation on the store's *raw* numpy buffers (what a memory dump
would see), not through the API. `raw_buffers` is the one place that knows where they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.config import StoreSettings
from dispenser.store import MatchRule, TemplateStore, ThresholdRule

DIM = 128
THRESHOLD = 0.93


def _raw_buffers(store: TemplateStore) -> dict[str, np.ndarray]:
    """Every array the store owns (template rows, timestamps, scratch, keys), by name."""
    b = store.raw_buffers()
    return {"rows": b.rows, "born": b.born, "served": b.served, "seq": b.seq,
            "state": b.state, "rotated": b.rotated, "scratch": b.scratch,
            "keys": b.keys, "key_epoch": b.key_epoch}


def _nonzero_template_rows(store: TemplateStore) -> int:
    """Rows of the raw template buffer holding at least one non-zero byte."""
    rows = _raw_buffers(store)["rows"]
    return int(np.count_nonzero(rows.view(np.uint8).reshape(rows.shape[0], -1).any(axis=1)))


def _template(seed: int, dim: int = DIM) -> np.ndarray:
    """A random L2-normalised float32 template (distinct seeds: different people)."""
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    v /= np.linalg.norm(v)
    return v


@pytest.fixture
def make_store(clock: VirtualClock) -> Iterator[Callable[..., TemplateStore]]:
    """Build stores on the test's virtual clock (no sweeper unless asked); all closed after.
    The rule is fixed at `threshold` (no short-ribbon band) unless a `rule` is given."""
    made: list[TemplateStore] = []

    def build(threshold: float = THRESHOLD, start_sweeper: bool = False,
              rule: ThresholdRule | None = None, **settings: Any) -> TemplateStore:
        store = TemplateStore(StoreSettings(**settings), dim=DIM, clock=clock,
                              rule=rule or MatchRule.fixed(threshold),
                              start_sweeper=start_sweeper)
        made.append(store)
        return store

    yield build
    for store in made:
        store.close()


def _serve(store: TemplateStore, probe: np.ndarray) -> None:
    """One person served: decide must dispense, and the paper goes out (commit)."""
    decision = store.decide(probe.copy())
    assert decision.dispense and decision.reservation is not None
    assert store.commit(decision.reservation)


@pytest.fixture
def raw() -> Callable[[TemplateStore], dict[str, np.ndarray]]:
    """raw(store) -> the store's raw buffers by name (rows, born, served, keys, ...)."""
    return _raw_buffers


@pytest.fixture
def nonzero_rows() -> Callable[[TemplateStore], int]:
    """nonzero_rows(store) -> how many raw template rows hold any non-zero byte."""
    return _nonzero_template_rows


@pytest.fixture
def template() -> Callable[..., np.ndarray]:
    """template(seed) -> a random unit float32 template; one seed is one person."""
    return _template


@pytest.fixture
def serve() -> Callable[[TemplateStore, np.ndarray], None]:
    """serve(store, probe): decide dispenses and the paper goes out (commit)."""
    return _serve

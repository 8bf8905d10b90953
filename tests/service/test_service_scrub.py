"""The service scrubs the embedder once per hold, after its last embedding: when the
decision is made, when it fails, when the hold is abandoned, and on close (so that no
activation of a face outlives the decision it served; tests/vision/test_embedder.py
shows what a scrub overwrites)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from service_doubles import Person, Rig


def test_one_scrub_per_decision_after_its_last_embedding(
        rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    seen: list[tuple[str, bool]] = []
    scrub = rig.pipeline.scrub

    def watched_scrub() -> None:
        seen.append((rig.svc.state.value, rig.svc.motor_busy))
        scrub()

    rig.pipeline.scrub = watched_scrub  # type: ignore[method-assign]
    rig.scene = [Person(1)]
    rig.run_for(6.0)
    assert rig.svc.counters.decisions == 1
    # in the same step as the decision, once the motor has its job (the scrub is a whole
    # network pass: done before the hand-off it would delay the ribbon)
    assert seen == [("dispensing", True)]
    embedded = rig.pipeline.embed_calls
    assert embedded > 1                      # several embeddings in the hold, one scrub
    assert rig.pipeline.scrubs_after_embed == [embedded]
    rig.scene = []
    rig.run_for(3.0)                         # leaving embeds nothing: nothing to scrub
    assert rig.pipeline.scrubs_after_embed == [embedded]


def test_a_failed_decision_is_scrubbed_too(rig_factory: Callable[..., Rig],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    rig = rig_factory()
    at_decide: list[list[int]] = []

    def decide(probe: np.ndarray) -> Any:
        at_decide.append(list(rig.pipeline.scrubs_after_embed))
        raise RuntimeError("store failed")

    monkeypatch.setattr(rig.store, "decide", decide)
    rig.scene = [Person(1)]
    rig.run_for(4.0)
    assert at_decide == [[]]                 # not scrubbed before the decision...
    assert rig.pipeline.scrubs_after_embed == [rig.pipeline.embed_calls]  # ...but after


def test_an_abandoned_hold_is_scrubbed(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.scene = [Person(1)]
    rig.run_for(1.5)                         # embeddings taken, hold not complete
    assert rig.pipeline.embed_calls > 0 and rig.pipeline.scrubs_after_embed == []
    rig.scene = []
    rig.run_for(1.0)
    assert rig.svc.counters.decisions == 0
    assert rig.pipeline.scrubs_after_embed == [rig.pipeline.embed_calls]


def test_closing_mid_hold_scrubs(rig_factory: Callable[..., Rig]) -> None:
    rig = rig_factory()
    rig.scene = [Person(1)]
    rig.run_for(1.5)
    assert rig.pipeline.embed_calls > 0 and rig.pipeline.scrubs_after_embed == []
    rig.svc.close()
    assert rig.pipeline.scrubs_after_embed == [rig.pipeline.embed_calls]

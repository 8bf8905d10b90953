"""dispenser.api: the small Python surface (README "Python API"). The example that runs
the real models is tests/test_readme_api.py; these check each function's contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import dispenser
from dispenser import api
from dispenser.clock import BootClock, VirtualClock
from dispenser.config import MatchSettings, Settings
from dispenser.errors import DispenserError
from dispenser.vision import QualityReport


def _unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(api.TEMPLATE_DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _pair(cosine: float) -> tuple[np.ndarray, np.ndarray]:
    """Two unit templates whose cosine is exactly `cosine` (to float32 precision)."""
    a, noise = _unit(1).astype(np.float64), _unit(2).astype(np.float64)
    ortho = noise - (noise @ a) * a
    ortho /= np.linalg.norm(ortho)
    b = cosine * a + np.sqrt(1.0 - cosine**2) * ortho
    return a.astype(np.float32), b.astype(np.float32)


def test_similarity_is_the_cosine_and_refuses_non_templates() -> None:
    a, b = _pair(0.5)
    assert api.similarity(a, b) == pytest.approx(0.5, abs=1e-6)
    assert api.similarity(a, a) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(DispenserError, match="b is not a template"):
        api.similarity(a, np.zeros(64, np.float32))


def test_is_same_applies_the_configured_threshold() -> None:
    a, b = _pair(0.9)
    strict = Settings(match=MatchSettings(threshold=0.95))
    lenient = Settings(match=MatchSettings(threshold=0.85))
    assert not api.is_same(a, b, settings=strict)
    assert api.is_same(a, b, settings=lenient)
    assert api.pairwise_threshold(strict) == 0.95
    assert api.is_same(a, a)  # the default threshold, a template against itself


def test_template_store_defaults_to_the_board_clock_and_the_configured_rule() -> None:
    settings = Settings(match=MatchSettings(threshold=0.9))
    with api.TemplateStore(settings, start_sweeper=False, zeroise_on_signals=False) as store:
        assert isinstance(store._clock, BootClock)
        assert store.rule.thresholds(5).certain == 0.9 and store.dim == api.TEMPLATE_DIM
    clock = VirtualClock(1000.0)
    with api.TemplateStore(clock=clock, start_sweeper=False,
                           zeroise_on_signals=False) as store:
        a = _unit(3)
        first = store.decide(a.copy())
        assert first.reservation is not None and store.commit(first.reservation)
        assert not store.decide(a.copy()).dispense
        clock.advance(Settings().store.deny_window_s)
        assert store.decide(a.copy()).dispense  # the injected clock moved the window


def test_a_face_templates_repr_leaves_the_template_out() -> None:
    face = api.FaceTemplate((1.0, 2.0, 3.0, 4.0), QualityReport(ok=True, reason="ok"),
                            _unit(4))
    assert "template" not in repr(face) and str(face.template[0]) not in repr(face)
    assert not any(f.repr for f in dataclasses.fields(face) if f.name == "template")


def test_face_templates_finds_nothing_in_an_empty_image() -> None:
    assert api.face_templates(np.zeros((120, 160, 3), np.uint8)) == []


def test_load_image_errors_are_one_line() -> None:
    with pytest.raises(DispenserError, match=r"does not exist$"):
        dispenser.load_image("/nonexistent/face.png")

"""The audit's invariant-8 check passes on the shipped configuration and fails when the
refusal threshold stops following the crowd or the card (evidence only if it can fail)."""

from __future__ import annotations

import dataclasses

import pytest

from dispenser.audit import rule_checks
from dispenser.audit.registry import CheckFailed
from dispenser.store import rule as rule_module
from dispenser.store.rule import MatchRule


def test_the_crowd_aware_refusal_check_passes() -> None:
    evidence = rule_checks.crowd_aware_refusal()
    assert evidence["card"] == "face_recognition_sface_2021dec"
    assert evidence["worst_group"] == "kpop"


def test_it_fails_when_the_threshold_ignores_the_live_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule stuck at its one-template threshold refuses strangers N times as often."""
    real = rule_module.rule_for
    stuck = lambda settings: dataclasses.replace(  # noqa: E731
        real(settings), threshold=real(settings).certain(1))
    monkeypatch.setattr(rule_checks, "rule_for", stuck)
    with pytest.raises(CheckFailed, match="not derived from a calibrated"):
        rule_checks.crowd_aware_refusal()


def test_it_fails_when_the_target_is_not_met(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tail whose threshold is one decade too lenient breaks the per-visit target."""
    real = rule_module.rule_for

    def lenient(settings: object) -> MatchRule:
        rule = real(settings)  # type: ignore[arg-type]
        assert rule.tail is not None
        return dataclasses.replace(rule, max_false_refusal=rule.max_false_refusal * 10)

    monkeypatch.setattr(rule_checks, "rule_for", lenient)
    with pytest.raises(CheckFailed, match="per visit, over"):
        rule_checks.crowd_aware_refusal()


def test_it_fails_when_a_match_in_the_band_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """No shorter-ribbon band: the 'short' probe would be served or refused instead."""
    real = rule_module.rule_for
    monkeypatch.setattr(rule_checks, "rule_for", lambda settings: dataclasses.replace(
        real(settings), max_false_short=real(settings).max_false_refusal))
    with pytest.raises(CheckFailed, match="short -> "):
        rule_checks.crowd_aware_refusal()

"""The audit's invariant-7 checks pass on this code and fail when the bound they prove is
taken away (each is evidence only if it can fail)."""

from __future__ import annotations

import pytest

from dispenser.audit import bounds_checks
from dispenser.audit.registry import CheckFailed


def test_the_bound_checks_pass() -> None:
    assert bounds_checks.bounded_queues()["second_dispense_refused"] is True
    retries = bounds_checks.bounded_retries()
    assert retries["frames_sent"] == retries["retries"] + 1
    run = bounds_checks.motor_run_limit()
    assert run["max_run_ms"] <= run["motor_ran_ms"] <= run["max_run_ms"] + 10


def test_motor_run_limit_fails_when_the_firmware_stops_supervising(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from firmware_sim.controller import Controller

    monkeypatch.setattr(Controller, "_supervise", lambda self, now, door: None)
    with pytest.raises(CheckFailed, match="the motor still ran after"):
        bounds_checks.motor_run_limit()


def test_bounded_queues_fails_when_a_second_dispense_job_is_accepted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dispenser.service.actuator import MotorWorker

    monkeypatch.setattr(MotorWorker, "submit", lambda self, length_mm, tag: None)
    with pytest.raises(CheckFailed, match="a second dispense job was queued"):
        bounds_checks.bounded_queues()


def test_bounded_retries_fails_when_the_link_sends_more_than_its_retries(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dispenser.motor.link import MotorLink

    real = MotorLink._send

    def twice(self: MotorLink, frame: bytes, connect: bool = True) -> bool:
        real(self, frame, connect)
        return real(self, frame, connect)

    monkeypatch.setattr(MotorLink, "_send", twice)
    with pytest.raises(CheckFailed, match="8 request frames were sent, expected 4"):
        bounds_checks.bounded_retries()

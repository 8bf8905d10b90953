"""Fault injection over the pty: for every fault the simulator can inject, the host
never feeds twice for one dispense call, never waits past its bound, reports the right
state, and works again once the fault has cleared."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from motor_rig import LINK_SETTINGS, WAIT_S, HoldableClock, request_budget, wait_for

from dispenser.clock import BootClock
from dispenser.config import SerialSettings
from dispenser.motor import ControllerState, DispenseResult, MotorError, MotorLink
from firmware_sim import SimulatedController

# Scheduling slack on top of a contract bound: threads on a loaded 2-core host run late
# by up to a few seconds; a wait without a bound would show as a hang far past it.
SLACK_S = 3.0
# An injected reply delay longer than a request's timeout, so it forces a resend.
DELAY_MS = round(2500 * LINK_SETTINGS["timeout_s"])


def _bound(settings: SerialSettings, sim: SimulatedController) -> float:
    """The longest a dispense may block: the controller's run-time limit, one request
    budget for the first answer, one for the closing ABORT/STATUS, and scheduling slack."""
    return sim.limits.max_run_ms / 1000.0 + 3 * request_budget(settings) + SLACK_S


class Probe:
    """Runs one dispense and checks the invariants every fault test shares."""

    def __init__(self, link: MotorLink, sim: SimulatedController,
                 settings: SerialSettings) -> None:
        self.link, self.sim, self.settings = link, sim, settings

    def dispense(self, mm: int = 600, during: str | None = None, after_mm: float = 0.0,
                 hold: HoldableClock | None = None, **kw: int
                 ) -> tuple[DispenseResult, float]:
        """Dispense; `during` is a fault injected once the motor is running and has fed
        `after_mm`. With `hold` (the simulator's clock; for a fault that resets the
        controller), simulated time stands still from a loop pass before the fault until
        the reset, so it lands exactly between two passes of the firmware loop, as on a
        board, however slow this host."""
        starts, out = self.sim.motor_starts, self.sim.paper_out_mm
        box: list[DispenseResult] = []
        t0 = time.monotonic()
        worker = threading.Thread(target=lambda: box.append(self.link.dispense(mm)))
        worker.start()
        if during is not None:
            assert wait_for(lambda: self.sim.motor_on)
            assert wait_for(lambda: self.sim.paper_out_mm - out >= after_mm)
            if hold is not None:
                self._hold_after_a_pass(hold)
            resets = self.sim.resets
            self.sim.inject(during, **kw)
            if hold is not None:
                assert wait_for(lambda: self.sim.resets > resets)
                hold.release()
        bound = _bound(self.settings, self.sim)
        worker.join(timeout=bound + 5)
        elapsed = time.monotonic() - t0
        assert not worker.is_alive(), "dispense hung"
        assert elapsed <= bound, f"dispense took {elapsed:.2f} s"
        fed = self.sim.paper_out_mm - out
        assert self.sim.motor_starts - starts <= 1, "motor started twice for one dispense"
        r = box[0]
        if r.ok:
            assert self.sim.motor_starts - starts == 1
            assert abs(r.dispensed_mm - fed) <= 1, (r, fed)
        return r, fed

    def _hold_after_a_pass(self, hold: HoldableClock) -> None:
        """Stop simulated time, then wait until the firmware loop has measured the paper
        at the held time (a pass that began before the hold may still be finishing)."""
        hold.hold()
        held_mm = self.sim.plant.position_mm()
        ctl = self.sim.controller
        assert ctl is not None
        assert wait_for(lambda: not ctl.running or ctl.run_start_pos + ctl.run_mm == held_mm)

    def recovers(self) -> None:
        assert wait_for(lambda: self.link.state() is ControllerState.READY)
        r, _ = self.dispense(200)
        assert r.ok, r


@pytest.fixture
def probe(link: MotorLink, sim: SimulatedController, serial_settings: SerialSettings) -> Probe:
    return Probe(link, sim, serial_settings)


@pytest.fixture
def quiet_probe(slow_sim: SimulatedController) -> Iterator[Probe]:
    """A probe on the slow plant whose link sends no heartbeat in its first seconds, for
    faults injected into "the next frames": they then hit the dispense's own exchange and
    force a resend. On the fast plant a ribbon (0.2 s) ended within one reply timeout, so
    a lost ACK was made up by the DONE; and with heartbeats every 0.2 s a loaded host
    sometimes let a heartbeat go first and take the fault."""
    settings = SerialSettings(port=slow_sim.device_path,
                              **{**LINK_SETTINGS, "heartbeat_s": 10.0})
    with MotorLink(settings, BootClock()) as link:
        assert slow_sim.settle(WAIT_S)  # the boot's own EVENT is out before any fault
        yield Probe(link, slow_sim, settings)


@pytest.mark.parametrize("fault", ["drop", "drop_request", "corrupt", "corrupt_request",
                                   "duplicate", "delay"])
def test_frame_fault_on_the_first_exchange(quiet_probe: Probe, fault: str) -> None:
    quiet_probe.sim.inject(fault, count=2, ms=DELAY_MS)
    r, _ = quiet_probe.dispense()
    assert r.ok, r
    assert quiet_probe.link.counters.resends >= (0 if fault == "duplicate" else 1)
    quiet_probe.recovers()


@pytest.mark.parametrize("fault", ["drop", "corrupt", "duplicate", "delay"])
def test_frame_fault_while_the_motor_runs(probe: Probe, fault: str) -> None:
    # Several replies in a row (polls' ACKs, the EVENT, the DONE) are hit.
    r, _ = probe.dispense(1200, during=fault, count=4)
    assert r.ok, r
    probe.recovers()


def test_corrupt_request_is_nakked_and_resent_at_once(quiet_probe: Probe) -> None:
    quiet_probe.sim.inject("corrupt_request")
    r, _ = quiet_probe.dispense()
    assert r.ok and quiet_probe.link.counters.naks >= 1


def test_garbage_before_and_during(probe: Probe) -> None:
    probe.sim.inject("garbage", nbytes=500)
    r, _ = probe.dispense(900, during="garbage", nbytes=500)
    assert r.ok, r
    probe.recovers()


def test_short_hang_is_ridden_out(probe: Probe) -> None:
    probe.sim.inject("hang", ms=300)
    assert wait_for(lambda: probe.sim.frozen)
    r, _ = probe.dispense()
    assert r.ok, r
    assert probe.sim.resets == 0


def test_hang_past_the_watchdog_resets_and_nothing_runs_twice(probe: Probe) -> None:
    probe.sim.inject("hang", ms=5000)  # the watchdog bites after 1000 ms
    assert wait_for(lambda: probe.sim.frozen)
    r, _ = probe.dispense()
    # Either the request was lost with the watchdog reset ("offline"), or it was answered
    # after the reset ("reset": it was meant for the earlier boot). Never a double run.
    assert not r.ok and r.error in ("offline", "reset"), r
    assert probe.sim.motor_starts == 0
    probe.recovers()


def test_hang_while_running_ends_with_the_watchdog(probe: Probe) -> None:
    r, fed = probe.dispense(1500, during="hang", ms=5000)
    assert not r.ok and r.error in ("reset", "timeout", "offline"), r
    assert not probe.sim.motor_on
    if r.dispensed_known:
        assert r.dispensed_mm <= fed + 1  # the record can lag a frozen loop, never lead
    probe.recovers()


def test_reset_mid_dispense_reports_what_went_out(probe: Probe,
                                                  sim_clock: HoldableClock) -> None:
    # The reset lands right after a loop pass: the retained record then holds all the paper
    # that went out, to the encoder's 1 mm resolution (held clock: see Probe.dispense).
    r, fed = probe.dispense(1500, during="reset", after_mm=300, hold=sim_clock)
    assert (r.ok, r.error, r.dispensed_known) == (False, "reset", True), r
    assert 300 <= fed < 1500 and abs(r.dispensed_mm - fed) < 1, (r, fed)
    assert probe.link.counters.controller_resets == 1
    probe.recovers()


def test_power_cycle_mid_dispense_reports_an_unknown_length(probe: Probe) -> None:
    r, fed = probe.dispense(1500, during="power_cycle", after_mm=300, ms=200)
    assert (r.ok, r.error, r.dispensed_known) == (False, "reset", False), r
    assert fed > 0 and not probe.sim.motor_on
    probe.recovers()


def test_unplug_while_idle_goes_offline_and_comes_back(probe: Probe) -> None:
    probe.sim.inject("unplug", ms=800)
    assert wait_for(lambda: probe.link.state() is ControllerState.OFFLINE)
    assert wait_for(lambda: probe.sim.pty_path is not None)
    t0 = time.monotonic()
    assert probe.link.status()["state"] == "ready"  # reopens the same path, greets again
    assert time.monotonic() - t0 <= request_budget(probe.settings) + SLACK_S
    probe.recovers()
    assert probe.link.counters.reconnects >= 2


def test_status_while_unplugged_fails_within_its_budget(probe: Probe) -> None:
    # Unplugged well past the request budget (1.6 s) plus slack: a status started late
    # on a loaded host must still find the port gone.
    probe.sim.inject("unplug", ms=6000)
    assert wait_for(lambda: probe.sim.pty_path is None)
    t0 = time.monotonic()
    with pytest.raises(MotorError) as err:
        probe.link.status()
    assert err.value.code == "offline"
    assert time.monotonic() - t0 <= request_budget(probe.settings) + SLACK_S
    assert probe.link.state() is ControllerState.OFFLINE
    probe.recovers()


def test_short_unplug_mid_dispense_still_completes_once(probe: Probe) -> None:
    # Back within the heartbeat timeout: the ribbon finishes; its DONE went nowhere, and
    # the resend after reconnecting fetches the stored DONE.
    r, _ = probe.dispense(1200, during="unplug", ms=150)
    assert r.ok, r
    probe.recovers()


def test_long_unplug_mid_dispense_stops_on_heartbeat_loss(
        slow_sim: SimulatedController) -> None:
    # Heartbeat timeout 300 ms (3 x 0.1 s), far shorter than the 5 s ribbon.
    settings = SerialSettings(port=slow_sim.device_path,
                              **{**LINK_SETTINGS, "heartbeat_s": 0.1})
    with MotorLink(settings, BootClock()) as link:
        probe = Probe(link, slow_sim, settings)
        r, fed = probe.dispense(1500, during="unplug", ms=1000)
        assert (r.ok, r.error) == (False, "heartbeat_lost"), r
        assert abs(r.dispensed_mm - fed) <= 1 and fed < 1500 and not slow_sim.motor_on
        probe.recovers()


def test_open_fails_fast_and_clearly_when_the_device_is_absent() -> None:
    settings = SerialSettings(port="/nonexistent/ttyACM9", **LINK_SETTINGS)
    t0 = time.monotonic()
    with pytest.raises(MotorError, match="no serial device"):
        MotorLink(settings, BootClock()).open()
    assert time.monotonic() - t0 <= request_budget(settings) + SLACK_S


def test_a_dead_return_line_reports_offline_and_an_unknown_length(probe: Probe) -> None:
    """Requests arrive, no answer comes back: the ribbon may well be running, so the host
    aborts it and, unable to ask, does not claim a length."""
    probe.sim.inject("drop", count=10_000)
    r, _ = probe.dispense(1500)
    assert (r.ok, r.error, r.dispensed_known) == (False, "offline", False), r
    assert probe.sim.motor_starts == 1
    assert wait_for(lambda: not probe.sim.motor_on)  # the ABORT got through
    probe.sim.clear_faults()
    probe.recovers()

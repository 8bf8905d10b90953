"""Every message, and every error code, over a real pseudo-terminal: the simulated
controller serving the shipped firmware logic, reached with pyserial (raw frames) and with
the host driver (MotorLink)."""

from __future__ import annotations

import os
import select
import threading
import time
import tty

import pytest
import serial
from motor_rig import LINK_SETTINGS, WAIT_S, RawClient, request_budget, wait_for

from dispenser.clock import BootClock
from dispenser.config import SerialSettings
from dispenser.motor import ControllerState, DispenseResult, MotorError, MotorLink
from dispenser.motor import protocol as P
from dispenser.motor.messages import Capabilities, ControllerStatus, decode_error
from firmware_sim import SimulatedController


def _boot(raw: RawClient) -> int:
    return Capabilities.decode(raw.hello().payload).boot_id


def _error(frame: P.Frame) -> tuple[str, int]:
    assert frame.msg_type == P.ERROR
    return decode_error(frame.payload)


def test_hello_status_heartbeat_round_trip(raw: RawClient) -> None:
    caps = raw.hello(seq=11, session=99, heartbeat_ms=1234)
    assert caps.msg_type == P.CAPABILITIES
    c = Capabilities.decode(caps.payload)
    assert (c.protocol, c.heartbeat_ms, c.max_run_ms) == (1, 1234, 1500)
    for msg_type, seq in ((P.STATUS, 12), (P.HEARTBEAT, 13)):
        raw.send(msg_type, seq)
        reply = raw.reply_to(seq)
        assert reply.msg_type == P.STATUS_REPLY
        assert ControllerStatus.decode(reply.payload).boot_id == c.boot_id


def test_dispense_ack_done_and_abort_round_trip(raw: RawClient, sim: SimulatedController
                                                ) -> None:
    boot = _boot(raw)
    before = sim.paper_out_mm
    raw.send(P.DISPENSE, 20, P.u16(300) + P.u16(boot))
    assert raw.reply_to(20).msg_type == P.ACK
    done = raw.expect(lambda f: f.seq == 20 and f.msg_type == P.DONE)
    reported = P.get_u16(done.payload, 0)
    # What the controller measured is what went out (it may overshoot by one loop period).
    assert reported >= 300 and abs(reported - (sim.paper_out_mm - before)) <= 1
    raw.send(P.DISPENSE, 21, P.u16(1500) + P.u16(boot))
    assert raw.reply_to(21).msg_type == P.ACK
    raw.send(P.ABORT, 22)
    replies = [raw.reply_to(21), raw.reply_to(22)]
    assert _error(replies[0])[0] == "aborted"
    assert replies[1].msg_type == P.ACK and not sim.motor_on


def test_events_reach_the_host(raw: RawClient, sim: SimulatedController) -> None:
    _boot(raw)
    sim.press_button()
    ev = raw.expect(lambda f: f.msg_type == P.EVENT and P.get_u16(f.payload, 2) == 1)
    assert ev.seq == P.SEQ_NONE


def test_protocol_errors_over_the_pty(raw: RawClient) -> None:
    boot = _boot(raw)
    raw.send_bytes(b"\x07\x01\x02\x03\x00")                       # not a frame: NAK
    nak = raw.expect(lambda f: f.seq == P.SEQ_NONE and f.msg_type == P.ERROR)
    assert _error(nak) == ("bad_frame", 0)
    raw.send(P.STATUS, 30, b"\x00")                               # wrong payload size
    assert _error(raw.reply_to(30))[0] == "bad_frame"
    raw.send(P.STATUS, 31, version=9)
    assert _error(raw.reply_to(31))[0] == "bad_version"
    raw.send(0x7E, 32)
    assert _error(raw.reply_to(32))[0] == "unknown_command"
    raw.send(P.DISPENSE, 33, P.u16(0) + P.u16(boot))
    assert _error(raw.reply_to(33))[0] == "bad_length"
    raw.send(P.DISPENSE, 34, P.u16(1500) + P.u16(boot))
    assert raw.reply_to(34).msg_type == P.ACK
    raw.send(P.DISPENSE, 35, P.u16(100) + P.u16(boot))
    assert _error(raw.reply_to(35))[0] == "busy"
    raw.send(P.DISPENSE, 36, P.u16(100) + P.u16(boot ^ 0xFFFF))   # another boot's request
    assert _error(raw.reply_to(36))[0] == "reset"


def test_heartbeat_loss_stops_the_motor(slow_sim: SimulatedController) -> None:
    raw = RawClient(slow_sim.device_path)
    try:
        boot = Capabilities.decode(raw.hello(heartbeat_ms=200).payload).boot_id
        raw.send(P.DISPENSE, 40, P.u16(1500) + P.u16(boot))  # 5 s at this speed
        assert raw.reply_to(40).msg_type == P.ACK
        name, mm = _error(raw.expect(lambda f: f.seq == 40 and f.msg_type == P.ERROR))
    finally:
        raw.close()
    assert name == "heartbeat_lost" and 0 < mm < 1500 and not slow_sim.motor_on


def test_link_reports_each_mechanical_error(link: MotorLink, sim: SimulatedController
                                            ) -> None:
    sim.set_door(True)
    assert wait_for(lambda: link.state() is ControllerState.DOOR_OPEN)
    assert link.dispense(600).error == "door_open"
    sim.set_door(False)
    assert wait_for(lambda: link.state() is ControllerState.READY)

    sim.jam_next(after_mm=120)
    r = link.dispense(600)
    assert (r.ok, r.error, r.dispensed_mm) == (False, "jam", 120)
    assert wait_for(lambda: link.state() is ControllerState.JAMMED)
    assert link.dispense(600).error == "jam"  # latched
    sim.set_door(True)  # the door cycle clears the latch
    assert wait_for(lambda: link.state() is ControllerState.DOOR_OPEN)
    sim.set_door(False)
    assert wait_for(lambda: link.state() is ControllerState.READY)

    sim.inject("overcurrent")
    assert link.dispense(600).error == "overcurrent"
    sim.set_door(True)
    assert wait_for(lambda: link.state() is ControllerState.DOOR_OPEN)
    sim.set_door(False)

    sim.inject("slip")
    r = link.dispense(600)
    assert r.error == "timeout" and 0 < r.dispensed_mm < 600

    sim.set_roll(250)
    r = link.dispense(600)
    assert (r.error, r.dispensed_mm) == ("paper_empty", 250)
    assert wait_for(lambda: link.state() is ControllerState.OUT_OF_PAPER)
    assert link.dispense(600).error == "paper_empty"
    assert link.dispense(5000).error == "bad_length"


def test_abort_from_another_thread(link: MotorLink, sim: SimulatedController) -> None:
    results = []
    t = threading.Thread(target=lambda: results.append(link.dispense(1500)))
    t.start()
    assert wait_for(lambda: sim.motor_on)
    link.abort()
    t.join(timeout=WAIT_S)
    assert results[0].error == "aborted" and not sim.motor_on
    assert sim.motor_starts == 1


def test_button_presses_are_counted_once(link: MotorLink, sim: SimulatedController) -> None:
    link.button_presses()
    for _ in range(3):
        sim.press_button()
    got = 0
    deadline = time.monotonic() + WAIT_S
    while got < 3 and time.monotonic() < deadline:
        got += link.button_presses()
        time.sleep(0.01)
    # Two heartbeats later: heartbeats with the same counter must not count them again.
    time.sleep(2.5 * LINK_SETTINGS["heartbeat_s"])
    assert got + link.button_presses() == 3


def test_status_dict(link: MotorLink) -> None:
    r = link.dispense(200)
    s = link.status()
    assert s["last_seq"] == r.seq and s["last_result"] == "done"
    assert s["last_dispensed_mm"] == r.dispensed_mm and s["paper"] == "present"
    assert s["firmware"] == "1.0.0" and s["state"] == "ready"


def test_a_second_link_on_the_same_port_is_refused_clearly(
        link: MotorLink, serial_settings: SerialSettings) -> None:
    with pytest.raises(MotorError, match="in use by another process"):
        MotorLink(serial_settings, BootClock()).open()
    assert link.status()["state"] == "ready"  # the first one is undisturbed


def test_close_ends_a_blocked_dispense(slow_sim: SimulatedController) -> None:
    sim = slow_sim
    serial_settings = SerialSettings(port=sim.device_path, **LINK_SETTINGS)
    link = MotorLink(serial_settings, BootClock())
    link.open()
    sim.inject("slip")  # a ribbon that would take the whole run-time limit (10 s)
    results: list[DispenseResult] = []
    t = threading.Thread(target=lambda: results.append(link.dispense(600)))
    t.start()
    assert wait_for(lambda: sim.motor_on)
    link.close()
    # well inside the 10 s the ribbon would run: only close() can end the call this soon
    t.join(timeout=2 * request_budget(serial_settings) + 1)
    assert not t.is_alive() and not results[0].ok
    assert wait_for(lambda: not sim.motor_on)  # heartbeat loss stops it on the controller
    assert link.dispense(600).error == "offline"  # a closed link stays closed
    with serial.Serial(serial_settings.port, exclusive=True):
        pass  # and nothing of it holds the device any more


def test_a_controller_of_another_protocol_version_is_named() -> None:
    """A stand-in controller on a bare pty that answers everything with bad_version."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def answer() -> None:
        parser = P.FrameParser()
        while not stop.is_set():
            if select.select([master], [], [], 0.02)[0]:
                for f in parser.feed(os.read(master, 256)):
                    os.write(master, P.encode_frame(P.ERROR, f.seq, bytes((P.E_BAD_VERSION,))
                                                    + P.u16(0)))

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    settings = SerialSettings(port=os.ttyname(slave), timeout_s=0.1, retries=1)
    try:
        with pytest.raises(MotorError, match="another protocol version"):
            MotorLink(settings, BootClock()).open()
    finally:
        stop.set()
        t.join()
        os.close(master)
        os.close(slave)

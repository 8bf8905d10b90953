"""`dispenser motor selftest`: checks an installer can run at the machine, in order:

1. handshake: the controller answers HELLO (firmware version, features);
2. link: 20 heartbeats answered; round-trip times;
3. framing: a frame with a broken CRC is answered with a NAK (the controller resyncs);
4. commands: an unknown command type is refused with unknown_command;
5. sensors: door closed, paper present, no jam latched;
6. feed (only with --feed MM): the motor feeds MM and the controller confirms it.

Each check yields a `Check`; the command stops at nothing, reports all, and fails with the
first failing check's error name.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

from dispenser.motor import protocol as P
from dispenser.motor.link import MotorLink
from dispenser.motor.messages import MotorError, decode_error

_PINGS = 20
_UNKNOWN_TYPE = 0x7E  # reserved: never a request type (docs/protocol.md)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    error: str = ""  # the error name when not ok


def run_selftest(link: MotorLink, feed_mm: int = 0) -> Iterator[Check]:
    """Run the checks against an open link (see the module docstring)."""
    caps = link.capabilities
    if caps is None:
        yield Check("handshake", False, "no capabilities", "offline")
        return
    yield Check("handshake", True,
                f"firmware {'.'.join(map(str, caps.firmware))}, protocol {caps.protocol}, "
                f"features {', '.join(caps.feature_names()) or 'none'}")
    yield _check_link(link)
    yield _check_framing(link)
    yield _check_unknown_command(link)
    yield _check_sensors(link)
    if feed_mm > 0:
        r = link.dispense(feed_mm)
        yield Check("feed", r.ok, f"asked {feed_mm} mm, controller measured {r.dispensed_mm} mm"
                    + ("" if r.ok else f" ({r.error})"), r.error or "")


def _check_link(link: MotorLink) -> Check:
    times = []
    for _ in range(_PINGS):
        t0 = time.perf_counter()
        frame = link.exchange(P.HEARTBEAT)
        times.append((time.perf_counter() - t0) * 1000.0)
        if frame.msg_type != P.STATUS_REPLY:
            return Check("link", False, "heartbeat not answered with status", "bad_frame")
    return Check("link", True, f"{_PINGS} heartbeats, round trip median "
                 f"{statistics.median(times):.2f} ms, max {max(times):.2f} ms")


def _check_framing(link: MotorLink) -> Check:
    good = bytearray(P.encode_body(P.STATUS, 1))
    good[-1] ^= 0xFF  # break the CRC
    seen = link.nak_count
    link.send_raw(P.cobs_encode(bytes(good)) + b"\x00")
    ok = link.wait_nak(seen, timeout_s=1.0)
    return Check("framing", ok, "corrupted frame answered with NAK" if ok
                 else "no NAK for a corrupted frame", "" if ok else "bad_frame")


def _check_unknown_command(link: MotorLink) -> Check:
    frame = link.exchange(_UNKNOWN_TYPE)
    if frame.msg_type == P.ERROR and decode_error(frame.payload)[0] == "unknown_command":
        return Check("commands", True, "unknown command refused with unknown_command")
    return Check("commands", False, "unknown command not refused", "unknown_command")


def _check_sensors(link: MotorLink) -> Check:
    try:
        s = link.status()
    except MotorError as exc:
        return Check("sensors", False, str(exc), exc.code)
    detail = f"door {s['door']}, paper {s['paper']}, state {s['state']}"
    if s["door"] != "closed":
        return Check("sensors", False, detail, "door_open")
    if s["jam_latched"]:
        return Check("sensors", False, detail, "jam")
    if s["paper"] != "present":
        return Check("sensors", False, detail, "paper_empty")
    return Check("sensors", True, detail)

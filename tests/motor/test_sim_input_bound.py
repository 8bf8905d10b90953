"""The simulated controller's input buffer is bounded like the firmware's parser: a host
that sends megabytes without a frame delimiter costs at most one frame's worth of memory,
gets one NAK for the over-long block, and the next frame is answered normally."""

from __future__ import annotations

from dispenser.clock import VirtualClock
from dispenser.motor import protocol as P
from firmware_sim import SimulatedController

READ_BYTES = 4096  # what the simulator's serve loop reads from the pty at a time


def test_a_megabyte_without_a_delimiter_stays_bounded_and_is_naked_once() -> None:
    sim = SimulatedController(clock=VirtualClock(0.0), seed=1)
    sim._boot()  # the firmware alone: bytes go in through _receive, out through _write
    sent: list[bytes] = []
    sim._write = sent.append  # type: ignore[method-assign]
    for _ in range(256):
        sim._receive(b"\x01" * READ_BYTES)
        assert len(sim._rx_partial) <= P.MAX_ENCODED
    assert sent == []
    sim._receive(b"\x00" + P.encode_frame(P.STATUS, 5))
    replies = P.FrameParser().feed(b"".join(sent))
    assert [(f.msg_type, f.seq) for f in replies] == [(P.ERROR, P.SEQ_NONE),
                                                      (P.STATUS_REPLY, 5)]
    assert replies[0].payload[0] == P.E_BAD_FRAME

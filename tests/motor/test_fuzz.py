"""Fuzzing both parsers: the controller's (firmware logic fed raw bytes) and the host's
(frame parser, reply routing and payload decoders), with random and mutated frames.

The default run pushes 100,000 frames through each side with a plain loop (cheap enough
for CI); `-m slow` pushes 2,000,000. Hypothesis adds structured cases on top. Properties:
no exception escapes, memory stays bounded, and the motor starts only for a DISPENSE that
an independent reference decoder confirms arrived intact (in practice: never).

Set DISPENSER_FUZZ_SEED to replay a failing run (the seed is in the assertion message).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from motor_rig import FakeBoard

from dispenser.clock import VirtualClock
from dispenser.config import SerialSettings
from dispenser.motor import MotorLink
from dispenser.motor import protocol as P
from dispenser.motor.link import _MAX_QUEUED
from firmware_sim.controller import Controller

BOOT = 0x4242
CI_FRAMES = 100_000
SLOW_FRAMES = 2_000_000


def _seed() -> int:
    return int(os.environ.get("DISPENSER_FUZZ_SEED", random.randrange(2**32)))


# --- an independent reference decoder (bitwise CRC from conftest, byte-wise COBS) ----------

def _ref_unstuff(block: bytes) -> bytes | None:
    out, i = bytearray(), 0
    while i < len(block):
        code = block[i]
        if code == 0 or i + code > len(block):
            return None
        out += block[i + 1:i + code]
        i += code
        if code != 0xFF and i < len(block):
            out.append(0)
    return bytes(out)


def _ref_is_runnable_dispense(block: bytes, crc: Callable[[bytes], int]) -> bool:
    """Would a correct controller start the motor for this block? (CRC, layout, type,
    boot id, length all right.)"""
    body = _ref_unstuff(block)
    if body is None or len(body) != 11 or body[4] != 4:
        return False
    if crc(body[:9]) != body[9] | body[10] << 8:
        return False
    length = body[5] | body[6] << 8
    return body[0] == 1 and body[1] == P.DISPENSE and body[7] | body[8] << 8 == BOOT and (
        1 <= length <= 1500)


# --- the corpus ----------------------------------------------------------------------------

def _valid_frame(rng: random.Random, types: tuple[int, ...]) -> bytes:
    t = rng.choice(types)
    seq = rng.randrange(1, 0x10000)
    if t == P.DISPENSE:
        payload = P.u16(rng.randrange(1, 1501)) + P.u16(BOOT)   # would run if intact
    elif t == P.HELLO:
        payload = bytes((1,)) + P.u16(rng.randrange(0x10000)) + P.u16(rng.randrange(0x10000))
    elif t in (P.STATUS, P.ABORT, P.HEARTBEAT):
        payload = b""
    else:
        size = {P.ACK: 1, P.CAPABILITIES: 15, P.DONE: 2, P.ERROR: 3, P.STATUS_REPLY: 24,
                P.EVENT: 6}.get(t, rng.randrange(P.MAX_PAYLOAD + 1))
        payload = rng.randbytes(size)
        if t == P.EVENT:
            seq = 0
    return P.encode_frame(t, seq, payload)


def _mutate(rng: random.Random, frame: bytes) -> bytes:
    """Damage a frame the ways a serial line does (never returns it intact)."""
    body = bytearray(frame[:-1])
    kind = rng.randrange(7)
    if kind == 0:                                        # 1 to 3 bit flips
        for _ in range(rng.randrange(1, 4)):
            body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
    elif kind == 1:                                      # a burst of up to 16 bits
        i = rng.randrange(len(body) - 1)
        burst = rng.randrange(1, 0x10000)
        body[i] ^= burst & 0xFF
        body[i + 1] ^= burst >> 8
    elif kind == 2:                                      # a byte lost
        del body[rng.randrange(len(body))]
    elif kind == 3:                                      # a byte inserted (maybe 0x00)
        body.insert(rng.randrange(len(body) + 1), rng.randrange(256))
    elif kind == 4:                                      # truncated
        body = body[:rng.randrange(len(body))]
    elif kind == 5:                                      # one byte replaced
        i = rng.randrange(len(body))
        body[i] = (body[i] + rng.randrange(1, 256)) & 0xFF
    else:                                                # pure noise
        body = bytearray(rng.randbytes(rng.randrange(1, 60)))
    return bytes(body) + b"\x00"


def _stream(rng: random.Random, n: int, types: tuple[int, ...]) -> Iterator[bytes]:
    """n frames: mostly mutated valid frames, some pure noise, and (10 %) long garbage."""
    for _ in range(n):
        r = rng.random()
        if r < 0.9:
            yield _mutate(rng, _valid_frame(rng, types))
        else:
            yield rng.randbytes(rng.randrange(1, 300))


# --- the two sides ---------------------------------------------------------------------------

def _fuzz_controller(n: int, seed: int, ref_crc: Callable[[bytes], int]) -> None:
    rng = random.Random(seed)
    board = FakeBoard()  # door shut, paper in: an intact DISPENSE would run
    now = [0]
    sent = [0]

    def send(frame: bytes) -> None:
        sent[0] += 1

    ctl = Controller(board, lambda: now[0], send, BOOT)
    runnable = 0
    pending = bytearray()
    ref_tail = b""  # the oracle splits the same stream at the same delimiters
    for chunk in _stream(rng, n, (*P.REQUEST_TYPES, 0x7E)):
        pending += chunk
        *blocks, ref_tail = (ref_tail + chunk).split(b"\x00")
        runnable += sum(1 for block in blocks if _ref_is_runnable_dispense(block, ref_crc))
        cut = rng.randrange(len(pending) + 1)            # arbitrary read boundaries
        ctl.receive(bytes(pending[:cut]))
        del pending[:cut]
        now[0] += 1
        ctl.tick()
        assert ctl.parser.pending_bytes() <= P.MAX_ENCODED, f"seed={seed}"
    ctl.receive(bytes(pending) + b"\x00")
    assert board.starts <= runnable, f"motor started without an intact DISPENSE (seed={seed})"
    assert ctl.parser.frames_bad > n // 2, f"seed={seed}"
    assert sent[0] > 0


def _fuzz_host(n: int, seed: int) -> None:
    rng = random.Random(seed)
    link = MotorLink(SerialSettings(port="/dev/null"), VirtualClock())
    parser = P.FrameParser()
    with link._expect(1234):
        for chunk in _stream(rng, n, P.REPLY_TYPES + P.REQUEST_TYPES):
            for frame in parser.feed(chunk):
                link._on_frame(frame)  # routes, decodes EVENT/STATUS payloads; never raises
            assert len(link._waiting[1234]) <= _MAX_QUEUED
            if rng.random() < 0.01:  # the waiter consumed its replies
                link._waiting[1234].clear()
        # Not wedged by the garbage: a clean reply still reaches its waiter, and only it.
        link._waiting[1234].clear()
        for frame in parser.feed(b"\x00" + P.encode_frame(P.DONE, 1234, P.u16(600))):
            link._on_frame(frame)
        assert [f.msg_type for f in link._waiting[1234]] == [P.DONE], f"seed={seed}"
    assert parser.frames_bad > n // 2, f"seed={seed}"


def test_controller_parser_survives_100k_frames(crc16_bitwise: Callable[[bytes], int]) -> None:
    _fuzz_controller(CI_FRAMES, _seed(), crc16_bitwise)


def test_host_parser_survives_100k_frames() -> None:
    _fuzz_host(CI_FRAMES, _seed())


@pytest.mark.slow
def test_controller_parser_long_run(crc16_bitwise: Callable[[bytes], int]) -> None:
    _fuzz_controller(SLOW_FRAMES, _seed(), crc16_bitwise)


@pytest.mark.slow
def test_host_parser_long_run() -> None:
    _fuzz_host(SLOW_FRAMES, _seed())


def test_the_reference_decoder_accepts_what_the_codec_sends(
        crc16_bitwise: Callable[[bytes], int]) -> None:
    """The fuzz's oracle would catch a valid dispense (else the property is vacuous)."""
    frame = P.encode_frame(P.DISPENSE, 9, P.u16(600) + P.u16(BOOT))
    assert _ref_is_runnable_dispense(frame[:-1], crc16_bitwise)
    board = FakeBoard()
    Controller(board, lambda: 0, lambda b: None, BOOT).receive(frame)
    assert board.starts == 1


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20), st.integers(0, 2**32 - 1))
def test_any_byte_soup_around_a_good_frame_never_hides_it(noise: list[bytes], seed: int
                                                          ) -> None:
    """Whatever garbage precedes it, a good frame after a delimiter is decoded."""
    board = FakeBoard()
    out = P.FrameParser()
    replies: list[P.Frame] = []
    ctl = Controller(board, lambda: 0, lambda b: replies.extend(out.feed(b)), BOOT)
    for chunk in noise:
        ctl.receive(chunk)
    ctl.receive(b"\x00" + P.encode_frame(P.STATUS, 77))
    assert any(f.seq == 77 and f.msg_type == P.STATUS_REPLY for f in replies)
    assert board.starts == 0

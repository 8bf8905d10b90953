"""The wire format (src/dispenser/motor/protocol.py) against its specification:
CRC test vectors, COBS, frame layout, the hex examples printed in docs/protocol.md, and
resynchronisation after garbage."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from dispenser.motor import protocol as P


def test_crc_check_value_of_both_implementations() -> None:
    assert P.crc16(b"123456789") == 0x29B1
    assert P.crc16_portable(b"123456789") == 0x29B1
    assert P.crc16(b"") == 0xFFFF


@given(st.binary(max_size=300))
def test_crc_implementations_agree(crc16_bitwise: Callable[[bytes], int], data: bytes) -> None:
    assert P.crc16(data) == P.crc16_portable(data) == crc16_bitwise(data)


@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_no_zero_bytes(data: bytes) -> None:
    enc = P.cobs_encode(data)
    assert b"\x00" not in enc
    assert len(enc) <= len(data) + 1 + len(data) // 254
    assert P.cobs_decode(enc) == data


def test_cobs_known_vectors() -> None:
    # From the COBS paper's worked examples (Cheshire & Baker 1999).
    assert P.cobs_encode(b"") == b"\x01"
    assert P.cobs_encode(b"\x00") == b"\x01\x01"
    assert P.cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert P.cobs_encode(b"\x11\x00\x00\x00") == b"\x02\x11\x01\x01\x01"
    run = bytes(range(1, 255))
    assert P.cobs_encode(run) == b"\xff" + run
    assert P.cobs_decode(b"\x05\x11") is None            # code runs past the end
    assert P.cobs_decode(b"\x02\x00") is None            # a zero inside a block


@given(st.sampled_from(P.REQUEST_TYPES + P.REPLY_TYPES), st.integers(0, 0xFFFF),
       st.binary(max_size=P.MAX_PAYLOAD))
def test_every_frame_round_trips(msg_type: int, seq: int, payload: bytes) -> None:
    wire = P.encode_frame(msg_type, seq, payload)
    assert wire.endswith(b"\x00") and wire.count(0) == 1 and len(wire) <= P.MAX_ENCODED + 1
    frames = P.FrameParser().feed(wire)
    assert len(frames) == 1
    f = frames[0]
    assert (f.status, f.version, f.msg_type, f.seq, f.payload) == (P.OK, P.VERSION, msg_type,
                                                                   seq, payload)


def test_body_layout_is_little_endian_with_crc_last() -> None:
    body = P.encode_body(P.DISPENSE, 0x1234, P.u16(600) + P.u16(0xBEEF))
    assert body[:5] == bytes((1, 0x02, 0x34, 0x12, 4))
    assert body[5:9] == bytes((0x58, 0x02, 0xEF, 0xBE))
    assert P.get_u16(body, 9) == P.crc16(body[:9])


def test_the_hex_examples_in_the_protocol_document_are_what_the_codec_sends(
        repo_root: Path) -> None:
    """Every `frame: TYPE seq=N payload=HEX -> WIRE` line in docs/protocol.md is checked."""
    doc = (repo_root / "docs" / "protocol.md").read_text(encoding="utf-8")
    pattern = re.compile(r"^(\w+) seq=(\d+) payload=([0-9a-f ]*?)\s*->\s*([0-9a-f ]+)$",
                         re.MULTILINE)
    types = {v: k for k, v in P.TYPE_NAMES.items()}
    examples = pattern.findall(doc)
    assert len(examples) >= 8
    for name, seq, payload, wire in examples:
        got = P.encode_frame(types[name], int(seq), bytes.fromhex(payload))
        assert got.hex(" ") == wire.strip(), name


def test_parser_resyncs_after_garbage_and_split_reads() -> None:
    frame = P.encode_frame(P.STATUS, 9)
    stream = b"\xff\x13\x37garbage" + b"\x00" + frame + b"\x42" * 10 + frame
    parser = P.FrameParser()
    out: list[P.Frame] = []
    for i in range(len(stream)):  # one byte at a time, as a slow UART delivers it
        out += parser.feed(stream[i:i + 1])
    ok = [f for f in out if f.status == P.OK]
    assert len(ok) == 1 and ok[0].seq == 9  # the frame glued to garbage is lost, alone
    out = parser.feed(b"\x00" + frame)
    assert [f.status for f in out] == [P.OK]


def test_parser_memory_is_bounded_on_an_endless_block() -> None:
    parser = P.FrameParser()
    assert parser.feed(b"\x01" * 10) == [] and parser.pending_bytes() == 10
    for _ in range(1000):
        assert parser.feed(b"\x01" * 1000) == []
    assert parser.pending_bytes() == 0  # dropped, not buffered
    frames = parser.feed(b"\x00" + P.encode_frame(P.ABORT, 3))
    assert [f.status for f in frames] == [P.BAD_LENGTH, P.OK]


def test_rejections_name_their_reason() -> None:
    body = bytearray(P.encode_body(P.STATUS, 1))
    assert P.decode_body(P.cobs_encode(bytes(body))).status == P.OK
    body[-2] ^= 0x10
    assert P.decode_body(P.cobs_encode(bytes(body))).status == P.BAD_CRC
    assert P.decode_body(P.cobs_encode(b"\x01\x03\x01\x00\x09")).status == P.BAD_LENGTH
    assert P.decode_body(b"\x09\x01").status == P.BAD_COBS

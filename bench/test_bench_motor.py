"""The motor link: request/acknowledge round trip over a pseudo-terminal, and parser
throughput on both sides.

Run: pytest bench/test_bench_motor.py  (figures go to docs/performance.md, "Motor link").

* `test_round_trip`: one HEARTBEAT -> STATUS_REPLY exchange through MotorLink (framing,
  the pty, firmware_sim's server thread, the controller logic, the reader thread and the
  waiter hand-off), next to two references on the same pty: a raw pyserial STATUS exchange
  (no link machinery) and a plain byte echo by a thread (the pty and thread wake-up floor).
* `test_host_parser_throughput` / `test_controller_parser_throughput`: FrameParser.feed on
  10,000 valid frames in 4 KiB reads (host), and Controller.receive of STATUS requests
  including building each reply (controller), in frames/s and MB/s.
* `test_speed_ratios`: the targets, as ratios against references measured here and now.
"""

from __future__ import annotations

import os
import select
import threading
import tty
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import serial
from bench_timing import best_of

from dispenser.clock import BootClock
from dispenser.config import SerialSettings
from dispenser.motor import MotorLink
from dispenser.motor import protocol as P
from firmware_sim import Controller, SimulatedController

FRAMES = 10_000


class _Board:
    features = P.CAP_PAPER_SENSOR | P.CAP_DOOR_SWITCH

    def motor(self, on: bool) -> None:
        pass

    def position_mm(self) -> int:
        return 0

    def paper_present(self) -> bool:
        return True

    def door_open(self) -> bool:
        return False

    def fault(self) -> bool:
        return False

    def button_count(self) -> int:
        return 0

    def paper_left_mm(self) -> int:
        return -1

    def retained_load(self) -> list[int] | None:
        return None

    def retained_store(self, words: list[int]) -> None:
        pass


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatedController]:
    with SimulatedController(clock=BootClock(), speed=20.0, seed=5) as s:
        yield s


@pytest.fixture(scope="module")
def raw_sim() -> Iterator[SimulatedController]:
    """A second simulator for the raw client: one pty, one reader."""
    with SimulatedController(clock=BootClock(), speed=20.0, seed=6) as s:
        yield s


@pytest.fixture(scope="module")
def link(sim: SimulatedController) -> Iterator[MotorLink]:
    with MotorLink(SerialSettings(port=sim.device_path, heartbeat_s=10.0), BootClock()) as ln:
        yield ln


class _Echo:
    """A pty whose master side a thread echoes back: the floor of any pty round trip."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.ser = serial.Serial(os.ttyname(slave), timeout=1)
        os.close(slave)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            if select.select([self.master], [], [], 0.05)[0]:
                os.write(self.master, os.read(self.master, 4096))

    def round_trip(self, data: bytes) -> None:
        self.ser.write(data)
        got = b""
        while len(got) < len(data):
            got += self.ser.read(len(data) - len(got))

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.ser.close()
        os.close(self.master)


@pytest.fixture(scope="module")
def echo() -> Iterator[_Echo]:
    e = _Echo()
    yield e
    e.close()


def _link_rtt(link: MotorLink) -> Callable[[], Any]:
    return lambda: link.exchange(P.HEARTBEAT)


def _raw_rtt(sim: SimulatedController) -> tuple[Callable[[], Any], serial.Serial]:
    ser = serial.Serial(sim.device_path, timeout=1)
    parser = P.FrameParser()
    seq = [1]

    def run() -> None:
        seq[0] = seq[0] % 0xFFFF + 1
        ser.write(P.encode_frame(P.STATUS, seq[0]))
        while not any(f.seq == seq[0] for f in parser.feed(ser.read(ser.in_waiting or 1))):
            pass
    return run, ser


def _stream() -> bytes:
    return b"".join(P.encode_frame(P.STATUS_REPLY, i % 0xFFFF + 1, bytes(range(24)))
                    for i in range(FRAMES))


def _host_parse(data: bytes) -> int:
    parser = P.FrameParser()
    n = 0
    for i in range(0, len(data), 4096):
        n += len(parser.feed(data[i:i + 4096]))
    return n


def _controller_parse(requests: bytes) -> int:
    sent = [0]

    def count(frame: bytes) -> None:
        sent[0] += 1
    ctl = Controller(_Board(), lambda: 0, count, 1)
    for i in range(0, len(requests), 4096):
        ctl.receive(requests[i:i + 4096])
    return sent[0]


def _requests() -> bytes:
    return b"".join(P.encode_frame(P.STATUS, i % 0xFFFF + 1) for i in range(FRAMES))


def test_round_trip(benchmark: Any, link: MotorLink) -> None:
    benchmark(_link_rtt(link))


def test_round_trip_raw_pyserial(benchmark: Any, raw_sim: SimulatedController) -> None:
    run, ser = _raw_rtt(raw_sim)
    try:
        benchmark(run)
    finally:
        ser.close()


def test_round_trip_pty_echo(benchmark: Any, echo: _Echo) -> None:
    benchmark(echo.round_trip, P.encode_frame(P.STATUS, 1))


def test_host_parser_throughput(benchmark: Any) -> None:
    data = _stream()
    assert benchmark.pedantic(_host_parse, (data,), rounds=10, warmup_rounds=1) == FRAMES
    per_s = FRAMES / benchmark.stats.stats.min
    benchmark.extra_info.update(frames_per_s=round(per_s),
                                mb_per_s=round(len(data) / benchmark.stats.stats.min / 1e6, 2))


def test_controller_parser_throughput(benchmark: Any) -> None:
    data = _requests()
    assert benchmark.pedantic(_controller_parse, (data,), rounds=5, warmup_rounds=1) == FRAMES
    benchmark.extra_info.update(
        frames_per_s=round(FRAMES / benchmark.stats.stats.min),
        mb_per_s=round(len(data) / benchmark.stats.stats.min / 1e6, 2))


def test_speed_ratios(link: MotorLink, raw_sim: SimulatedController, echo: _Echo) -> None:
    raw, ser = _raw_rtt(raw_sim)
    frame = P.encode_frame(P.STATUS, 1)
    try:
        contenders = {"link": _link_rtt(link), "raw pyserial": raw,
                      "pty echo": lambda: echo.round_trip(frame)}
        rtt = best_of(contenders, 300)
    finally:
        ser.close()
    # Parsers on 1,000-frame slices, interleaved with the reference: the least any parser
    # must do, in C (split at 0x00 + CRC of each block).
    data, requests = _stream()[: len(_stream()) // 10], _requests()[: len(_requests()) // 10]
    n = FRAMES // 10
    best = best_of({
        "host": lambda: _host_parse(data),
        "controller": lambda: _controller_parse(requests),
        "floor": lambda: [P.crc16(b) for b in data.split(b"\x00")],
    }, 50)
    host, ctl, floor = best["host"], best["controller"], best["floor"]
    for name, s in rtt.items():
        print(f"round trip {name}: {s * 1e3:.3f} ms")
    print(f"host parser: {n / host:,.0f} frames/s, {len(data) / host / 1e6:.2f} MB/s")
    print(f"controller: {n / ctl:,.0f} frames/s, {len(requests) / ctl / 1e6:.2f} MB/s")
    print(f"split+crc floor: {n / floor:,.0f} frames/s")
    # The link's machinery (reader thread, waiter hand-off, locks) adds less than one more
    # raw exchange; everything, simulator included, stays within 15 bare pty round trips.
    assert rtt["link"] < 2.5 * rtt["raw pyserial"]
    assert rtt["link"] < 15 * rtt["pty echo"]
    # Pure Python against C: the host parser within 40x the floor, the controller (which
    # also builds and CRCs a 24-byte reply per request) within 400x.
    assert host < 40 * floor and ctl < 400 * floor

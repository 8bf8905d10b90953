"""Invariant 7 (bounded everything) beyond the store's capacity: bounded queues and buffers,
bounded retries, and a motor that cannot run past its safety limit.

The motor checks run the controller firmware that ships (`hw/firmware/controller.py`, the
same file `firmware_sim` serves) on a virtual clock, and the host's serial driver against a
pseudo-terminal that never answers: what a board does, without a board.
"""

from __future__ import annotations

import os
import time
import tty
from collections.abc import Callable
from typing import TYPE_CHECKING

from dispenser.audit.registry import Evidence, check, require
from dispenser.clock import BootClock, Clock, VirtualClock
from dispenser.config import SerialSettings
from dispenser.motor import protocol as P

if TYPE_CHECKING:
    from firmware_sim.controller import Controller
    from firmware_sim.plant import SimulatedPlant

_FLOOD_BYTES = 1024 * 1024  # what the queue checks push without a single frame delimiter
_READ = 4096


@check("bounded-queues", invariant="7. Bounded everything",
       claim="No input can make a queue or buffer grow without limit: serial bytes without "
             "a frame delimiter, on either side of the link, are dropped past one frame's "
             "length, and at most one dispense job is ever queued.",
       method=f"Feed {_FLOOD_BYTES // 1024} KiB with no delimiter, {_READ} bytes at a "
              "time, to the host's frame parser and to the controller firmware; after "
              f"every read each holds at most one frame ({P.MAX_ENCODED} bytes). Submit a "
              "second dispense job while one runs: refused.")
def bounded_queues() -> Evidence:
    from dispenser.service.actuator import MotorWorker

    host = P.FrameParser()
    firmware, _ = _firmware_on_clock(VirtualClock(0.0), lambda data: None)
    largest = 0
    chunk = b"\x01" * _READ
    for _ in range(_FLOOD_BYTES // _READ):
        host.feed(chunk)
        firmware.receive(chunk)
        largest = max(largest, host.pending_bytes(), firmware.parser.pending_bytes())
    require(largest <= P.MAX_ENCODED,
            f"{largest} bytes held without a delimiter (one frame is {P.MAX_ENCODED})")
    refused = _second_job_refused(MotorWorker)
    require(refused, "a second dispense job was queued while one was running")
    return {"bytes_fed": _FLOOD_BYTES, "largest_held_bytes": largest,
            "frame_limit_bytes": P.MAX_ENCODED, "second_dispense_refused": refused}


def _firmware_on_clock(clock: Clock, send: Callable[[bytes], None]
                       ) -> tuple[Controller, SimulatedPlant]:
    """The shipped controller firmware (its default limits) driving a simulated roll and
    motor on `clock`, with no pty: host bytes go in through `Controller.receive`, replies
    come out through `send`, and the caller runs `Controller.tick()`."""
    from firmware_sim.controller import Controller
    from firmware_sim.plant import SimulatedPlant

    plant = SimulatedPlant(clock, speed=1.0, roll_mm=50_000)
    controller = Controller(plant, lambda: int(clock.now() * 1000.0), send, boot_id=1)
    return controller, plant


def _second_job_refused(worker_type: type) -> bool:
    import threading

    from dispenser.motor import DispenseResult

    release = threading.Event()

    class _SlowMotor:
        def dispense(self, length_mm: int) -> DispenseResult:
            release.wait(5.0)
            return DispenseResult(ok=False, dispensed_mm=0, error="aborted")

    worker = worker_type(_SlowMotor())
    try:
        worker.submit(600, "first")
        try:
            worker.submit(600, "second")
        except RuntimeError:
            return True
        return False
    finally:
        release.set()
        worker.close()


@check("bounded-retries", invariant="7. Bounded everything",
       claim="A request to a controller that does not answer is sent at most 1 + "
             "serial.retries times, then the controller is reported offline: the host "
             "never retries forever.",
       method="Open the host's serial driver (retries 3, timeout 0.05 s) on a "
              "pseudo-terminal nobody answers; count the request frames that reach the "
              "other end and check the handshake fails as offline within its budget.")
def bounded_retries() -> Evidence:
    from dispenser.motor import MotorError, MotorLink

    settings = SerialSettings(timeout_s=0.05, retries=3)
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    link = MotorLink(settings, BootClock(), port=os.ttyname(slave))
    start = time.monotonic()
    try:
        try:
            link.open()
            opened = True
        except MotorError as exc:
            opened = False
            require(exc.code == "offline", f"the failed handshake reported {exc.code!r}")
        elapsed = time.monotonic() - start
        sent = _read_all(master)
    finally:
        link.close()
        os.close(master)
        os.close(slave)
    require(not opened, "the handshake succeeded with nobody answering")
    frames = [block for block in sent.split(b"\x00") if block]
    require(len(frames) == settings.retries + 1,
            f"{len(frames)} request frames were sent, expected {settings.retries + 1}")
    budget = (settings.retries + 1) * settings.timeout_s
    return {"retries": settings.retries, "frames_sent": len(frames),
            "budget_s": budget, "gave_up_after_s": round(elapsed, 3)}


def _read_all(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, _READ)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


@check("motor-run-limit", invariant="7. Bounded everything",
       claim="The motor can never run longer than the firmware's run-time limit for one "
             "ribbon, even when the paper feeds so slowly that the ribbon never completes, "
             "and a ribbon longer than the length limit is refused.",
       method="Run the shipped firmware logic (its default limits) on a virtual clock with "
              "a roller that slips (feeds at a crawl, so neither the length nor the jam "
              "detector stops it) while the host keeps sending heartbeats; the motor must "
              "stop with `timeout` within one 10 ms loop of the limit. Ask for the length "
              "limit + 1 mm: refused with `bad_length`, motor never started.")
def motor_run_limit() -> Evidence:
    from dispenser.motor.messages import decode_error

    clock = VirtualClock(0.0)
    parser = P.FrameParser()
    replies: list[P.Frame] = []
    firmware, plant = _firmware_on_clock(clock, lambda data: replies.extend(parser.feed(data)))
    limits = firmware.limits

    def errors(seq: int) -> list[str]:
        return [decode_error(f.payload)[0] for f in replies
                if f.msg_type == P.ERROR and f.seq == seq]

    too_long = P.u16(limits.max_length_mm + 1) + P.u16(firmware.boot_id)
    firmware.receive(P.encode_frame(P.DISPENSE, 1, too_long))
    require(errors(1) == ["bad_length"] and firmware.motor_starts == 0,
            f"a {limits.max_length_mm + 1} mm ribbon was not refused ({errors(1)})")
    plant.slip_next()
    firmware.receive(P.encode_frame(P.DISPENSE, 2, P.u16(limits.max_length_mm)
                                    + P.u16(firmware.boot_id)))
    ran_ms = 0
    for tick in range(2 * limits.max_run_ms // 10):
        if tick % 100 == 0:  # the host is alive: only the run-time limit may stop it
            firmware.receive(P.encode_frame(P.HEARTBEAT, 3 + tick // 100 % 200))
        firmware.tick()
        if not plant.motor_on:
            break
        clock.advance(0.010)
        ran_ms += 10
    require(firmware.motor_starts == 1, "the slipping ribbon never started the motor")
    require(not plant.motor_on, f"the motor still ran after {ran_ms} ms")
    require(errors(2) == ["timeout"], f"the slipping ribbon ended with {errors(2)}, "
                                      "not timeout")
    require(ran_ms <= limits.max_run_ms + 10,
            f"the motor ran {ran_ms} ms, limit {limits.max_run_ms} ms")
    return {"max_run_ms": limits.max_run_ms, "motor_ran_ms": ran_ms,
            "paper_fed_mm": round(plant.paper_out_mm),
            "max_length_mm": limits.max_length_mm, "over_length_refused": True}

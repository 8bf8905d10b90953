"""SimulatedController: the shipped controller logic served on a pseudo-terminal.

The host opens the returned path with pyserial exactly as it opens /dev/serial/by-id/... on
a board. The path is a symlink the simulator owns (in a private temporary directory) to
the current /dev/pts/N, like udev's by-id link: when the simulated port "vanishes"
(`inject("unplug")`), the pty is closed (the host's reads and writes fail with EIO), the
link disappears, and when the port comes back a new pty is opened and the link points at
it, so a host that reopens the same path reconnects.

One thread serves everything: it reads the master side, feeds the controller, ticks it
every ~2 ms, writes its frames back and applies injected faults. See docs/protocol.md,
"Simulator", for the fault list and how the host sees each one.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import tempfile
import threading
import tty
from collections import deque
from pathlib import Path

from dispenser.clock import BootClock, Clock
from dispenser.motor import protocol as P
from firmware_sim.controller import Controller, Limits
from firmware_sim.plant import SimulatedPlant

# Faults inject() accepts, with what each does (also in docs/protocol.md).
FAULTS = {
    "drop": "the next reply frame is lost",
    "drop_request": "the next request frame is lost before the controller sees it",
    "corrupt": "one byte of the next reply frame is damaged",
    "corrupt_request": "one byte of the next request frame is damaged (controller NAKs)",
    "duplicate": "the next reply frame is sent twice",
    "delay": "the next reply frame is held back `ms` (default 300)",
    "garbage": "`count` random bytes (default 64) are sent to the host now",
    "hang": "the firmware freezes for `ms` (default 500); past the watchdog it resets",
    "reset": "the controller resets now (watchdog reset: retained record survives)",
    "unplug": "the port vanishes for `ms` (default 500) and comes back; firmware runs on",
    "power_cycle": "the port vanishes for `ms` and the controller loses power",
    "overcurrent": "the motor driver trips at the next run",
    "slip": "the next run feeds at a crawl (only the run-time limit stops it)",
    "jam": "the next run stalls after 100 mm",
}

TICK_S = 0.002
WATCHDOG_MS = 1000  # the RP2040 firmware's machine.WDT timeout


class SimulatedController:
    """The controller firmware on a PC, behind a pty. See the module docstring."""

    def __init__(self, clock: Clock | None = None, speed: float = 1.0, roll_mm: int = 50_000,
                 limits: Limits | None = None, seed: int | None = None) -> None:
        self._clock = clock if clock is not None else BootClock()
        self.plant = SimulatedPlant(self._clock, speed=speed, roll_mm=roll_mm)
        self.limits = limits if limits is not None else Limits()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._commands: deque[tuple[str, int, int]] = deque()
        self._reply_faults: deque[tuple[str, int]] = deque()
        self._request_faults: deque[str] = deque()
        self._delayed: list[tuple[int, bytes]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._master = -1
        self._slave = -1
        self._rx_partial = bytearray()
        self._dir: str | None = None
        self.pty_path: str | None = None
        self.controller: Controller | None = None
        self.resets = 0
        self.frozen = False  # inside an injected hang
        self._passes = 0
        self._passed = threading.Condition()

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> str:
        """Open the pty, boot the firmware, serve it; return the stable device path."""
        if self._thread is not None:
            raise RuntimeError("simulator already started")
        self._dir = tempfile.mkdtemp(prefix="dispenser-sim-")
        self._open_pty()
        self._boot()
        self._thread = threading.Thread(target=self._serve, name="firmware-sim", daemon=True)
        self._thread.start()
        return self.device_path

    @property
    def device_path(self) -> str:
        """The symlink the host opens (stable across unplug/replug)."""
        if self._dir is None:
            raise RuntimeError("simulator not started")
        return str(Path(self._dir) / "ttySIM0")

    def stop(self) -> None:
        """Stop serving, close the pty and remove the link (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_pty()
        if self._dir is not None:
            Path(self._dir).rmdir()
            self._dir = None

    def __enter__(self) -> SimulatedController:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settle(self, timeout_s: float = 1.0) -> bool:
        """Wait until the firmware loop has made one whole pass that began after this call
        (False if none did within `timeout_s`: a hang fault, or stopped).

        On a virtual clock, a driver that advances time while the motor runs calls this
        before advancing again, so the firmware sees every step, as a board's 1 ms loop
        would. A Python thread on a loaded host can otherwise be late by tens of
        milliseconds, during which several steps of feed go out past the target."""
        with self._passed:
            target = self._passes + 2  # the pass under way may have read the old time
            return self._passed.wait_for(lambda: self._passes >= target, timeout_s)

    def _tick(self) -> None:
        assert self.controller is not None
        self.controller.tick()
        with self._passed:
            self._passes += 1
            self._passed.notify_all()

    # --- the world, for tests and the console ------------------------------------------------

    def press_button(self) -> None:
        self.plant.press_button()

    def set_door(self, is_open: bool) -> None:
        self.plant.set_door(is_open)

    def jam_next(self, after_mm: float = 100.0) -> None:
        self.plant.jam_next(after_mm)

    def set_roll(self, mm: int) -> None:
        self.plant.set_roll(mm)

    @property
    def paper_out_mm(self) -> float:
        """Paper that physically left the machine, over all resets."""
        return self.plant.paper_out_mm

    @property
    def motor_on(self) -> bool:
        return self.plant.motor_on

    @property
    def motor_starts(self) -> int:
        """Times the motor was switched on (the double-dispense tests count these)."""
        return self.plant.motor_starts

    def clear_faults(self) -> None:
        """Cancel frame faults still pending (a line that heals)."""
        with self._lock:
            self._reply_faults.clear()
            self._request_faults.clear()

    def reset(self) -> None:
        """Reset the controller now (as `inject("reset")`)."""
        self.inject("reset")

    def inject(self, fault: str, *, count: int = 1, ms: int | None = None,
               nbytes: int = 64) -> None:
        """Inject one of FAULTS: `count` repeats a frame fault, `ms` sets a duration or
        delay, `nbytes` the amount of garbage."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r} (known: {', '.join(sorted(FAULTS))})")
        if fault == "overcurrent":
            self.plant.overcurrent_next()
        elif fault == "slip":
            self.plant.slip_next()
        elif fault == "jam":
            self.plant.jam_next()
        elif fault in ("drop", "corrupt", "duplicate", "delay"):
            with self._lock:
                self._reply_faults.extend([(fault, 300 if ms is None else ms)] * count)
        elif fault in ("drop_request", "corrupt_request"):
            with self._lock:
                self._request_faults.extend([fault] * count)
        else:
            with self._lock:
                self._commands.append((fault, nbytes, 500 if ms is None else ms))

    # --- the pty ---------------------------------------------------------------------------

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: a byte pipe like USB-CDC
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.pty_path = os.ttyname(slave)
        self._rx_partial.clear()
        link = self.device_path
        tmp = link + ".new"
        os.symlink(self.pty_path, tmp)
        os.replace(tmp, link)

    def _close_pty(self) -> None:
        if self._dir is not None:
            Path(self.device_path).unlink(missing_ok=True)
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = self._slave = -1
        self.pty_path = None

    def _write(self, data: bytes) -> None:
        """To the host; dropped when nobody reads (a CDC port with no host attached)."""
        if self._master < 0:
            return
        with contextlib.suppress(OSError):  # BlockingIOError: the host is not reading
            os.write(self._master, data)

    # --- the firmware ------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock.now() * 1000.0)

    def _boot(self) -> None:
        self.controller = Controller(self.plant, self._now_ms, self._send,
                                     boot_id=self._rng.randrange(1, 0x10000),
                                     limits=self.limits)

    def _send(self, frame: bytes) -> None:
        """The controller's output, through the reply faults."""
        with self._lock:
            fault = self._reply_faults.popleft() if self._reply_faults else None
        if fault is None:
            self._write(frame)
            return
        kind, ms = fault
        if kind == "corrupt":
            self._write(self._damage(frame))
        elif kind == "duplicate":
            self._write(frame + frame)
        elif kind == "delay":
            self._delayed.append((self._now_ms() + ms, frame))
        # "drop": nothing goes out

    def _damage(self, frame: bytes) -> bytes:
        """Flip bits in one byte before the delimiter, never creating a 0x00."""
        b = bytearray(frame)
        i = self._rng.randrange(0, len(b) - 1)
        b[i] ^= 0x5A if b[i] != 0x5A else 0xA5
        return bytes(b)

    def _receive(self, data: bytes) -> None:
        """Host bytes to the controller, frame by frame through the request faults.

        No frame is longer than `MAX_ENCODED` bytes, so a block that grows past it without
        a delimiter is handed to the firmware's parser as it is (which drops an over-long
        block without keeping it, and answers its delimiter with a NAK) and not kept here:
        the simulator holds at most one read more than the firmware would."""
        assert self.controller is not None
        self._rx_partial += data
        while True:
            zero = self._rx_partial.find(b"\x00")
            if zero < 0:
                if len(self._rx_partial) > P.MAX_ENCODED:
                    self.controller.receive(bytes(self._rx_partial))
                    self._rx_partial.clear()
                return
            frame = bytes(self._rx_partial[:zero + 1])
            del self._rx_partial[:zero + 1]
            with self._lock:
                fault = self._request_faults.popleft() if (
                    self._request_faults and len(frame) > 1) else None
            if fault == "drop_request":
                continue
            if fault == "corrupt_request":
                frame = self._damage(frame)
            self.controller.receive(frame)

    def _reboot(self, *, power_loss: bool) -> None:
        if power_loss:
            self.plant.power_off()
        else:
            self.plant.hardware_reset()
        self.resets += 1
        self._delayed.clear()
        self._rx_partial.clear()
        self._boot()

    def _drain_input(self) -> None:
        if self._master < 0:
            return
        try:
            while os.read(self._master, 4096):
                pass
        except OSError:
            pass

    def _run_command(self, name: str, nbytes: int, ms: int) -> None:
        if name == "garbage":
            self._write(bytes(self._rng.randrange(256) for _ in range(nbytes)))
        elif name == "reset":
            self._reboot(power_loss=False)
        elif name == "hang":
            self.frozen = True
            self._stop.wait(min(ms, WATCHDOG_MS) / 1000.0)
            self.frozen = False
            if ms >= WATCHDOG_MS:  # the watchdog bites: input queued meanwhile is lost
                self._drain_input()
                self._reboot(power_loss=False)
        elif name in ("unplug", "power_cycle"):
            self._close_pty()
            if name == "power_cycle":
                self._reboot(power_loss=True)
            # Unplugged, the firmware keeps running on its own (motor supervision included).
            deadline = self._now_ms() + ms
            while self._now_ms() < deadline and not self._stop.is_set():
                self._tick()
                self._stop.wait(TICK_S)
            if not self._stop.is_set():
                self._open_pty()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], TICK_S)
            except (OSError, ValueError):
                ready = []
            if ready:
                try:
                    data = os.read(self._master, 4096)
                except OSError:  # no slave open (EIO) or nothing after all
                    data = b""
                if data:
                    self._receive(data)
                else:
                    self._stop.wait(TICK_S)
            self._tick()
            if self._delayed:
                now = self._now_ms()
                due = [f for t, f in self._delayed if t <= now]
                self._delayed = [(t, f) for t, f in self._delayed if t > now]
                for frame in due:
                    self._write(frame)
            # Commands run right after a tick, so a reset lands where a real one would:
            # between two passes of the firmware loop.
            with self._lock:
                command = self._commands.popleft() if self._commands else None
            if command is not None:
                self._run_command(*command)

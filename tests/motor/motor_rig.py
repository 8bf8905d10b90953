"""What the motor tests share besides fixtures: the simulator's test speed and limits, a
clock a test can hold, a raw pyserial client, a fake board, and the waits they use.

It lives here, not in conftest.py, so test modules can import it by a name no other test
folder uses: `from conftest import ...` gets whichever conftest.py pytest loaded last, which
broke collection of `pytest tests/motor tests/sim`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import serial

from dispenser.clock import BootClock
from dispenser.config import SerialSettings
from dispenser.motor import protocol as P

# Fast but realistic ratios: 3000 mm/s, so a 600 mm ribbon takes 0.2 s.
SPEED = 20.0
TEST_LIMITS = dict(max_run_ms=1500, jam_ms=150)
# A reply is waited for 0.4 s per attempt, and the controller stops the motor after 1.5 s
# without a frame (3 heartbeats of 0.5 s): at 0.15 s and 0.6 s a loaded 2-core host (the
# firmware or the link's threads not scheduled in time) made healthy exchanges time out
# four times in a row, and a healthy ribbon end with heartbeat_lost.
LINK_SETTINGS = dict(timeout_s=0.4, retries=3, heartbeat_s=0.5)
# A plant at 600 mm/s that may run 10 s: a ribbon outlasts a reply timeout (a 600 mm one
# takes 1 s), so a lost reply is made up by a resend, not by the DONE; and a heartbeat
# timeout of a few hundred milliseconds ends a 1500 mm ribbon (2.5 s) however late the
# firmware thread runs (at SPEED that ribbon took 0.5 s, and a loaded host let it finish).
SLOW_SPEED = 4.0
SLOW_LIMITS = dict(max_run_ms=10_000, jam_ms=150)
# How long a test waits for another thread to reach a state: only a hang guard (waits
# return as soon as the state is reached), generous for a loaded host.
WAIT_S = 30.0


class HoldableClock:
    """The device clock, except that a test can stop simulated time for a moment.

    Runs with `BootClock` until `hold()`; from then on `now()` stays put (the simulated
    motor feeds nothing, no firmware timeout moves) until `release()`, after which time
    runs on from where it stopped. A fault test holds it across a fault that lands between
    two passes of the firmware loop: on a board that gap is microseconds; on a loaded or
    emulated host the simulator's pass can take milliseconds, during which a real-time
    plant at 3000 mm/s would feed paper no board would.
    """

    def __init__(self) -> None:
        self._real = BootClock()
        self._lock = threading.Lock()
        self._offset = 0.0              # held time so far, taken off the real clock
        self._held_at: float | None = None

    def now(self) -> float:
        with self._lock:
            if self._held_at is not None:
                return self._held_at
            return self._real.now() - self._offset

    def hold(self) -> None:
        with self._lock:
            if self._held_at is None:
                self._held_at = self._real.now() - self._offset

    def release(self) -> None:
        with self._lock:
            if self._held_at is not None:
                self._offset = self._real.now() - self._held_at
                self._held_at = None

    def sleep_until(self, deadline: float, cancel: threading.Event) -> bool:
        while self.now() < deadline:
            if cancel.wait(min(0.005, max(0.0, deadline - self.now()))):
                return False
        return True


def request_budget(settings: SerialSettings) -> float:
    """The longest one request may take by contract (all attempts timing out)."""
    return (settings.retries + 1) * settings.timeout_s


def wait_for(cond: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    """Poll `cond` (a state reached by another thread) until true or timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


class RawClient:
    """Byte-level access to the controller over the pty: the protocol without the link."""

    def __init__(self, path: str) -> None:
        self.ser = serial.Serial(path, 115200, timeout=0.05)
        self.parser = P.FrameParser()
        self.frames: list[P.Frame] = []

    def send(self, msg_type: int, seq: int, payload: bytes = b"", version: int = P.VERSION
             ) -> None:
        self.ser.write(P.encode_frame(msg_type, seq, payload, version))

    def send_bytes(self, data: bytes) -> None:
        self.ser.write(data)

    def expect(self, pred: Callable[[P.Frame], bool], timeout_s: float = WAIT_S
               ) -> P.Frame:
        """The first frame (already received or arriving) matching `pred`."""
        deadline = time.monotonic() + timeout_s
        while True:
            for i, f in enumerate(self.frames):
                if pred(f):
                    del self.frames[: i + 1]
                    return f
            if time.monotonic() > deadline:
                raise AssertionError("expected frame did not arrive")
            self.frames.extend(self.parser.feed(self.ser.read(256)))

    def reply_to(self, seq: int, timeout_s: float = WAIT_S) -> P.Frame:
        return self.expect(lambda f: f.status == P.OK and f.seq == seq, timeout_s)

    def hello(self, seq: int = 1, session: int = 7, heartbeat_ms: int = 3000) -> P.Frame:
        self.send(P.HELLO, seq, bytes((P.VERSION,)) + P.u16(session) + P.u16(heartbeat_ms))
        return self.reply_to(seq)

    def close(self) -> None:
        self.ser.close()


class FakeBoard:
    """A board for the controller logic alone: every input is a plain attribute."""

    features = (P.CAP_ENCODER | P.CAP_PAPER_SENSOR | P.CAP_DOOR_SWITCH | P.CAP_BUTTON
                | P.CAP_CURRENT_SENSE | P.CAP_RETAINED_RECORD)

    def __init__(self) -> None:
        self.on = False
        self.starts = 0
        self.pos = 0
        self.paper = True
        self.door = False
        self.driver_fault = False
        self.buttons = 0
        self.retained: list[int] | None = None

    def motor(self, on: bool) -> None:
        if on and not self.on:
            self.starts += 1
        self.on = on

    def position_mm(self) -> int:
        return self.pos

    def paper_present(self) -> bool:
        return self.paper

    def door_open(self) -> bool:
        return self.door

    def fault(self) -> bool:
        return self.driver_fault

    def button_count(self) -> int:
        return self.buttons

    def paper_left_mm(self) -> int:
        return -1

    def retained_load(self) -> list[int] | None:
        return self.retained

    def retained_store(self, words: list[int]) -> None:
        self.retained = list(words)

"""The motor controller's firmware logic: request handling and motor supervision.

The same file runs on the RP2040 under MicroPython (flashed as `controller.py`, driven by
`hw/firmware/main.py`) and on a PC inside `firmware_sim` (driven by `SimulatedController`),
so the simulator exercises the code that ships, not a model of it. It therefore uses only
what MicroPython has: plain classes, ints, bytes, lists; time comes from an injected
`now_ms()` (a non-wrapping millisecond counter), bytes go out through an injected
`send(frame)`, and the board behind a `Hal` (firmware_sim/hal.py).

Safety rules it enforces (docs/protocol.md, "Fail-safe"): the motor stops when the ribbon
is out, after `max_run_ms`, on ABORT, when no valid frame has arrived from the host for
the heartbeat timeout, when the door opens, the paper runs out, the driver reports a fault
or the encoder stops advancing (jam). A dispense is refused while the door is open, the
roll is empty or a jam is latched (cleared by opening and closing the door).
"""

try:
    from dispenser.motor import protocol as P
except ImportError:  # MicroPython on the controller: protocol.py is flashed beside us
    import protocol as P  # type: ignore[import-not-found, no-redef]

try:
    from typing import TYPE_CHECKING
except ImportError:  # MicroPython
    TYPE_CHECKING = False  # type: ignore[misc]

if TYPE_CHECKING:
    from collections.abc import Callable

    from firmware_sim.hal import Hal

FIRMWARE_VERSION = (1, 0, 0)

# Marks the retained record as ours (upper half of word 0).
_RETAINED_MAGIC = 0xD15E


class Limits:
    """Safety limits and timings. Defaults are the shipped firmware's; the simulator may
    shorten them so fault tests run fast."""

    def __init__(self, max_length_mm: int = 1500, max_run_ms: int = 12000,
                 jam_ms: int = 600, heartbeat_ms: int = 3000, speed_mm_s: int = 150,
                 history: int = 8) -> None:
        self.max_length_mm = max_length_mm      # longest ribbon one DISPENSE may ask for
        self.max_run_ms = max_run_ms            # motor never runs longer per ribbon
        self.jam_ms = jam_ms                    # no encoder progress this long = jam
        self.heartbeat_ms = heartbeat_ms        # silence from the host this long stops it
        self.speed_mm_s = speed_mm_s            # nominal feed speed (reported to the host)
        self.history = history                  # started dispenses remembered for retries


HEARTBEAT_MIN_MS = 200
HEARTBEAT_MAX_MS = 10000


class _Started:
    """A dispense that started (motor ran): what to answer a retry of its seq."""

    def __init__(self, seq: int, reply: int, payload: bytes) -> None:
        self.seq = seq
        self.reply = reply
        self.payload = payload


class Controller:
    """One controller boot. Call `receive(bytes)` with what the host sent and `tick()`
    often (the Pico's loop runs it at ~1 kHz; the simulator every millisecond or two)."""

    def __init__(self, hal: "Hal", now_ms: "Callable[[], int]",
                 send: "Callable[[bytes], None]", boot_id: int,
                 limits: "Limits | None" = None) -> None:
        self.hal = hal
        self.now_ms = now_ms
        self.send = send
        self.boot_id = boot_id & 0xFFFF or 1
        self.limits = limits if limits is not None else Limits()
        self.parser = P.FrameParser()
        hal.motor(False)
        self.motor_starts = 0
        self.session = -1
        self.heartbeat_ms = self.limits.heartbeat_ms
        now = now_ms()
        self.boot_ms = now
        self.last_rx_ms = now
        # The running dispense.
        self.running = False
        self.run_seq = 0
        self.run_target = 0
        self.run_start_ms = 0
        self.run_start_pos = 0
        self.run_mm = 0
        self.progress_ms = 0
        self.progress_mm = 0
        # Started dispenses, oldest first: a retry of one of them gets `reply` again.
        self.history: list[_Started] = []
        # The most recent dispense, for STATUS (and across a reset, from the record).
        self.last_seq = 0
        self.last_result = P.R_NONE
        self.last_error = 0
        self.last_mm = 0
        self.total_mm = 0
        self.jam_latched = False
        self.door_was_open = hal.door_open()
        self.button_base = hal.button_count()
        self.buttons = 0
        self.reported = -1  # so the first tick announces this boot with an EVENT
        self.previous = self._load_record()

    # --- the retained record: the last dispense, surviving a watchdog reset ------------

    def _load_record(self) -> "list[int] | None":
        """[session, seq, mm, result, error] of the last dispense before this boot."""
        words = self.hal.retained_load()
        if words is None or len(words) != 3 or (words[0] >> 16) != _RETAINED_MAGIC:
            return None
        rec = [words[0] & 0xFFFF, words[1] & 0xFFFF, words[1] >> 16,
               words[2] & 0xFF, (words[2] >> 8) & 0xFF]
        if rec[3] == P.R_RUNNING:  # the reset interrupted it
            rec[3] = P.R_ERROR
            rec[4] = P.E_RESET
        self.last_seq, self.last_mm, self.last_result, self.last_error = (
            rec[1], rec[2], rec[3], rec[4])
        return rec

    def _store_record(self) -> None:
        self.hal.retained_store([
            (_RETAINED_MAGIC << 16) | (self.session & 0xFFFF),
            (self.last_seq & 0xFFFF) | ((self.last_mm & 0xFFFF) << 16),
            (self.last_result & 0xFF) | ((self.last_error & 0xFF) << 8),
        ])

    # --- input ------------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Bytes from the host: complete frames are handled at once, in order."""
        for frame in self.parser.feed(data):
            self._handle(frame)

    def _reply(self, msg_type: int, seq: int, payload: bytes = b"") -> None:
        self.send(P.encode_frame(msg_type, seq, payload))

    def _error(self, seq: int, code: int, mm: int = 0) -> None:
        self._reply(P.ERROR, seq, bytes((code,)) + P.u16(mm))

    def _handle(self, frame: "P.Frame") -> None:
        if frame.status != P.OK:
            # Unreadable, so no seq to answer: a NAK tells the host to resend at once.
            self._error(P.SEQ_NONE, P.E_BAD_FRAME)
            return
        seq = frame.seq
        if frame.version != P.VERSION:
            self._error(seq, P.E_BAD_VERSION)
            return
        self.last_rx_ms = self.now_ms()  # any valid frame proves the host is alive
        t = frame.msg_type
        n = len(frame.payload)
        if t == P.HELLO:
            if n != 5:
                self._error(seq, P.E_BAD_FRAME)
            else:
                self._hello(seq, frame.payload)
        elif t == P.DISPENSE:
            if n != 4:
                self._error(seq, P.E_BAD_FRAME)
            else:
                self._dispense(seq, P.get_u16(frame.payload, 0), P.get_u16(frame.payload, 2))
        elif t == P.STATUS or t == P.HEARTBEAT:
            if n != 0:
                self._error(seq, P.E_BAD_FRAME)
            else:
                self._reply(P.STATUS_REPLY, seq, self._status_payload())
        elif t == P.ABORT:
            if n != 0:
                self._error(seq, P.E_BAD_FRAME)
            else:
                if self.running:
                    self._finish(P.E_ABORTED)
                self._reply(P.ACK, seq, bytes((P.ABORT,)))
        else:
            self._error(seq, P.E_UNKNOWN_COMMAND)

    def _hello(self, seq: int, payload: bytes) -> None:
        session = P.get_u16(payload, 1)
        if self.session >= 0 and session != self.session:
            # Another host process: its seqs restart, so our memory of them means nothing.
            # (The first HELLO of a boot forgets nothing: dispenses that came before it
            # must stay recognisable.)
            self.history = []
        self.session = session
        hb = P.get_u16(payload, 3)
        self.heartbeat_ms = max(HEARTBEAT_MIN_MS, min(HEARTBEAT_MAX_MS, hb))
        lim = self.limits
        ver = FIRMWARE_VERSION
        self._reply(P.CAPABILITIES, seq, bytes((P.VERSION, ver[0], ver[1], ver[2]))
                    + P.u16(self.boot_id) + bytes((self.hal.features,))
                    + P.u16(lim.max_length_mm) + P.u16(min(lim.max_run_ms, 0xFFFF))
                    + P.u16(self.heartbeat_ms) + P.u16(lim.speed_mm_s))

    def _dispense(self, seq: int, length: int, boot_id: int) -> None:
        self._watch_door()
        if boot_id != self.boot_id:
            self._stale_dispense(seq)
            return
        for entry in self.history:
            if entry.seq == seq:  # a retry: never run twice, say again what happened
                self._reply(entry.reply, seq, entry.payload)
                return
        if self.running:
            self._error(seq, P.E_BUSY)
        elif length == 0 or length > self.limits.max_length_mm:
            self._error(seq, P.E_BAD_LENGTH)
        elif self.hal.door_open():
            self._error(seq, P.E_DOOR_OPEN)
        elif self.jam_latched:
            self._error(seq, P.E_JAM)
        elif not self.hal.paper_present():
            self._error(seq, P.E_PAPER_EMPTY)
        else:
            self._start(seq, length)

    def _stale_dispense(self, seq: int) -> None:
        """A dispense addressed to an earlier boot of this controller: never run it; if the
        record of that boot's last dispense is this very request, tell how it ended."""
        rec = self.previous
        if rec is not None and rec[1] == seq and (self.session < 0 or rec[0] == self.session):
            if rec[3] == P.R_DONE:
                self._reply(P.DONE, seq, P.u16(rec[2]))
            else:
                self._error(seq, rec[4], rec[2])
        else:
            self._error(seq, P.E_RESET, P.MM_UNKNOWN)

    # --- the motor --------------------------------------------------------------------

    def _start(self, seq: int, length: int) -> None:
        now = self.now_ms()
        pos = self.hal.position_mm()
        self.running = True
        self.run_seq, self.run_target, self.run_mm = seq, length, 0
        self.run_start_ms = self.progress_ms = now
        self.run_start_pos, self.progress_mm = pos, 0
        self.last_seq, self.last_result, self.last_error, self.last_mm = (
            seq, P.R_RUNNING, 0, 0)
        self._store_record()
        self.history.append(_Started(seq, P.ACK, bytes((P.DISPENSE,))))
        if len(self.history) > self.limits.history:
            self.history.pop(0)
        self.hal.motor(True)
        self.motor_starts += 1
        self._reply(P.ACK, seq, bytes((P.DISPENSE,)))

    def _finish(self, error: int) -> None:
        """Stop the motor, then record and report how the dispense ended (0 = done)."""
        self.hal.motor(False)
        self.running = False
        self._measure()
        mm = min(self.run_mm, 0xFFFE)
        self.total_mm += mm
        if error == 0:
            reply, payload = P.DONE, P.u16(mm)
            self.last_result, self.last_error = P.R_DONE, 0
        else:
            reply, payload = P.ERROR, bytes((error,)) + P.u16(mm)
            self.last_result, self.last_error = P.R_ERROR, error
        self.last_mm = mm
        self._store_record()
        for entry in self.history:
            if entry.seq == self.run_seq:
                entry.reply, entry.payload = reply, payload
        self._reply(reply, self.run_seq, payload)

    def _measure(self) -> None:
        mm = self.hal.position_mm() - self.run_start_pos
        if mm != self.run_mm:
            self.run_mm = mm
            self.last_mm = min(mm, 0xFFFE)
            self._store_record()

    def tick(self) -> None:
        """Poll the sensors and supervise the motor; sends EVENT frames on changes."""
        hal = self.hal
        now = self.now_ms()
        door = self._watch_door()
        buttons = (hal.button_count() - self.button_base) & 0xFFFF
        pressed = buttons != self.buttons
        self.buttons = buttons
        if self.running:
            self._supervise(now, door)
        state = self._state_byte()
        if pressed or state != self.reported:
            self.reported = state
            self._reply(P.EVENT, P.SEQ_NONE, bytes((state, self._flags()))
                        + P.u16(self.buttons) + P.u16(self.boot_id))

    def _watch_door(self) -> bool:
        """Read the door; closing it after it was open clears a latched jam (someone
        opened the machine and cleared the paper path)."""
        door = self.hal.door_open()
        if self.door_was_open and not door:
            self.jam_latched = False
        self.door_was_open = door
        return door

    def _supervise(self, now: int, door: bool) -> None:
        self._measure()
        hal = self.hal
        if self.run_mm >= self.run_target:
            self._finish(0)
        elif hal.fault():
            self.jam_latched = True
            self._finish(P.E_OVERCURRENT)
        elif door:
            self._finish(P.E_DOOR_OPEN)
        elif not hal.paper_present():
            self._finish(P.E_PAPER_EMPTY)
        elif now - self.last_rx_ms >= self.heartbeat_ms:
            self._finish(P.E_HEARTBEAT_LOST)
        elif now - self.run_start_ms >= self.limits.max_run_ms:
            self._finish(P.E_TIMEOUT)
        elif self.run_mm != self.progress_mm:
            self.progress_mm, self.progress_ms = self.run_mm, now
        elif hal.features & P.CAP_ENCODER and now - self.progress_ms >= self.limits.jam_ms:
            self.jam_latched = True
            self._finish(P.E_JAM)

    # --- status -----------------------------------------------------------------------

    def _flags(self) -> int:
        hal = self.hal
        f = 0
        if hal.door_open():
            f |= P.F_DOOR_OPEN
        if hal.paper_present():
            f |= P.F_PAPER_PRESENT
        if self.running:
            f |= P.F_MOTOR_ON
        if self.jam_latched:
            f |= P.F_JAM_LATCHED
        return f

    def _state_byte(self) -> int:
        if self.running:
            return P.ST_RUNNING
        if self.hal.door_open():
            return P.ST_DOOR_OPEN
        if self.jam_latched:
            return P.ST_JAMMED
        if not self.hal.paper_present():
            return P.ST_PAPER_EMPTY
        return P.ST_READY

    def _status_payload(self) -> bytes:
        left = self.hal.paper_left_mm()
        return (bytes((self._state_byte(), self._flags())) + P.u16(self.boot_id)
                + P.u16(self.buttons) + P.u16(self.last_seq)
                + bytes((self.last_result, self.last_error)) + P.u16(self.last_mm)
                + P.u32(P.PAPER_LEFT_UNKNOWN if left < 0 else left)
                + P.u32(self.total_mm) + P.u32(self.now_ms() - self.boot_ms))

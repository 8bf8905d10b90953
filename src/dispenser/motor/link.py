"""MotorLink: the host's side of the motor protocol (docs/protocol.md).

What it guarantees the service:

- **Bounded**: every request waits at most `serial.timeout_s` per attempt and is resent at
  most `serial.retries` times; a dispense waits at most the controller's own run-time
  limit plus that request budget. Nothing blocks forever, whatever the controller does.
- **Never twice**: a dispense keeps one sequence number through all resends and polls,
  and carries the controller boot it was meant for, so neither a lost ACK nor a controller
  reset can make the controller run it a second time.
- **Self-healing**: when the port disappears (USB unplug) the link closes it, reports
  OFFLINE, and reopens the same path (use /dev/serial/by-id/..., stable across replugs)
  on the next request or heartbeat; the service is not restarted.
- **A state to show**: `state()` is READY, BUSY, OUT_OF_PAPER, JAMMED, DOOR_OPEN or
  OFFLINE, kept current by the controller's EVENT frames and the heartbeat's status.

I/O deadlines are measured on the real monotonic clock, not the injected one: they bound
waits on a physical port, and a frozen test clock must not freeze a dispense. The injected
clock paces the heartbeat (so a VirtualClock test decides when heartbeats happen).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Iterator
from types import TracebackType

import serial

from dispenser.clock import Clock
from dispenser.config import SerialSettings
from dispenser.logsafe import event
from dispenser.motor import protocol as P
from dispenser.motor.messages import (
    Capabilities,
    ControllerEvent,
    ControllerState,
    ControllerStatus,
    DispenseResult,
    MotorError,
    PayloadError,
    decode_done,
    decode_error,
    state_from_byte,
)
from dispenser.motor.transport import LinkDown, SerialTransport

_log = logging.getLogger("dispenser.motor")

# Replies queued per outstanding seq; more would mean a duplicating line, so drop the rest.
_MAX_QUEUED = 16


def _open_failure(exc: BaseException) -> str:
    """Why a serial device did not open, in words an installer can act on."""
    text = str(exc)
    if isinstance(exc, PermissionError) or "Permission denied" in text:
        return "permission denied (add this user to the 'dispenser' group: hw/README.md)"
    if "lock" in text:
        return "in use by another process"
    return "could not open the device"


class _NoReply(Exception):
    """A request got no answer in its whole retry budget."""


class LinkCounters:
    """Link health for logs and the status screen (ints only)."""

    def __init__(self) -> None:
        self.requests = 0
        self.resends = 0
        self.naks = 0
        self.stray_frames = 0
        self.bad_payloads = 0
        self.reconnects = 0
        self.controller_resets = 0


class MotorLink:
    """Talks to one controller; see the module docstring. Also a context manager."""

    def __init__(self, settings: SerialSettings, clock: Clock, *,
                 port: str | None = None) -> None:
        self._settings = settings
        self._clock = clock
        self._port = port if port is not None else settings.port
        self._transport: SerialTransport | None = None
        self._inbox = threading.Condition()
        self._waiting: dict[int, deque[P.Frame]] = {}
        self._naks = 0
        self._seq_lock = threading.Lock()
        self._seq = random.randrange(1, 0x10000)
        self._session = random.randrange(0, 0x10000)
        self._connect_lock = threading.Lock()
        self._dispense_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._caps: Capabilities | None = None
        self._need_hello = True
        self._offline = True
        self._open_error = ""
        self._state_byte: int | None = None
        self._boot_id: int | None = None
        self._button_counter: int | None = None
        self._pending_presses = 0
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self.counters = LinkCounters()

    # --- life cycle ------------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The serial device path in use."""
        return self._transport.port if self._transport is not None else self._port

    @property
    def capabilities(self) -> Capabilities | None:
        return self._caps

    def open(self) -> None:
        """Connect and handshake; raises MotorError("offline") if no controller answers.
        Starts the heartbeat thread."""
        if self._transport is not None:
            return
        path = self._port
        self._transport = SerialTransport(path, self._settings.baud, self._on_frame)
        if not self._ensure_connected():
            self.close()
            if not os.path.exists(path):
                raise MotorError(f"no serial device {path} (controller unplugged? see "
                                 "/dev/serial/by-id/ and hw/README.md)", code="offline")
            if self._open_error:
                raise MotorError(f"cannot use {path}: {self._open_error}", code="offline")
            raise MotorError(f"motor controller not answering on {path} (is the firmware "
                             "flashed? hw/README.md)", code="offline")
        self._stop.clear()
        self._heartbeat = threading.Thread(target=self._heartbeat_loop, name="motor-heartbeat",
                                           daemon=True)
        self._heartbeat.start()

    def close(self) -> None:
        """Stop the heartbeat and close the port. Idempotent."""
        self._stop.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(timeout=5)
        self._heartbeat = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        self._offline = True

    def __enter__(self) -> MotorLink:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- what the service asks ---------------------------------------------------------------

    def state(self) -> ControllerState:
        """The mechanism's state as last seen (OFFLINE when the link is down)."""
        transport = self._transport
        if self._offline or transport is None or not transport.is_open:
            return ControllerState.OFFLINE
        with self._cache_lock:
            byte = self._state_byte
        return ControllerState.OFFLINE if byte is None else state_from_byte(byte)

    def button_presses(self) -> int:
        """No-scan button presses since the last call (presses the controller counted
        before this link first connected are not included)."""
        with self._cache_lock:
            n, self._pending_presses = self._pending_presses, 0
        return n

    def status(self) -> dict[str, int | str]:
        """The controller's full status (technician view); raises MotorError if offline."""
        frame = self._checked(P.STATUS, b"")
        status = self._decode_status(frame)
        result = status.as_dict()
        caps = self._caps
        if caps is not None:
            result["firmware"] = ".".join(str(v) for v in caps.firmware)
        return result

    def abort(self) -> None:
        """Stop the motor now (the running dispense ends with error "aborted")."""
        self._checked(P.ABORT, b"")

    def dispense(self, length_mm: int) -> DispenseResult:
        """Feed one ribbon; blocks until the controller reports DONE or ERROR, or the
        bounded wait runs out (then the motor is aborted and the result is "timeout")."""
        if not 1 <= length_mm <= 0xFFFF:
            return DispenseResult(ok=False, dispensed_mm=0, error="bad_length")
        with self._dispense_lock:
            result = self._dispense(length_mm)
        event(_log, "dispense", level=logging.INFO if result.ok else logging.WARNING,
              seq=result.seq, length_mm=length_mm, dispensed_mm=result.dispensed_mm,
              error=result.error or "none")
        return result

    # --- low level (technician self-test, tests) ---------------------------------------------

    def exchange(self, msg_type: int, payload: bytes = b"") -> P.Frame:
        """One request with the usual retries; returns the reply frame (any type)."""
        try:
            return self._request(msg_type, payload, self._next_seq())
        except _NoReply:
            raise MotorError(f"motor controller on {self.port} does not answer",
                             code="offline") from None

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (the self-test's deliberately broken frame)."""
        if not self._ensure_connected() or self._transport is None:
            raise MotorError(f"motor controller on {self.port} is offline", code="offline")
        try:
            self._transport.send(data)
        except LinkDown:
            raise MotorError(f"motor port {self.port} went away", code="offline") from None

    @property
    def nak_count(self) -> int:
        """NAKs received: the controller saw a frame it could not read."""
        with self._inbox:
            return self._naks

    def wait_nak(self, seen: int, timeout_s: float) -> bool:
        """Wait until more than `seen` NAKs have arrived."""
        deadline = time.monotonic() + timeout_s
        with self._inbox:
            while self._naks <= seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._inbox.wait(left)
            return True

    # --- connection --------------------------------------------------------------------------

    def _ensure_connected(self) -> bool:
        """Port open and handshake done; one reopen/hello attempt if not (bounded)."""
        transport = self._transport
        if transport is None:
            return False
        if transport.is_open and not self._need_hello:
            return True
        with self._connect_lock:
            if transport.is_open and not self._need_hello:
                return True
            if not transport.is_open:
                try:
                    transport.open()
                except LinkDown:
                    return False  # close() ran: stay down
                except (OSError, serial.SerialException, ValueError) as exc:
                    self._open_error = _open_failure(exc)
                    self._go_offline("port_missing")
                    return False
                self._open_error = ""
                self.counters.reconnects += 1
            try:
                self._hello()
            except _NoReply:
                self._go_offline("no_hello_reply")
                return False
            return True

    def _hello(self) -> None:
        hb_ms = max(200, min(10_000, round(3000 * self._settings.heartbeat_s)))
        payload = bytes((P.VERSION,)) + P.u16(self._session) + P.u16(hb_ms)
        frame = self._request(P.HELLO, payload, self._next_seq(), connect=False)
        if frame.msg_type == P.ERROR and self._decode_error(frame)[0] == "bad_version":
            self._open_error = ("the controller speaks another protocol version (flash the "
                                "firmware of this release: hw/README.md)")
        if frame.msg_type != P.CAPABILITIES:
            raise _NoReply
        try:
            caps = Capabilities.decode(frame.payload)
        except PayloadError:
            self.counters.bad_payloads += 1
            raise _NoReply from None
        self._observe(None, caps.boot_id, None)
        self._caps = caps
        self._need_hello = False
        self._offline = False
        try:  # (raising only _NoReply keeps dispense() from ever raising)
            status = self._decode_status(self._request(P.STATUS, b"", self._next_seq(),
                                                       connect=False))
        except MotorError:
            self._need_hello = True
            raise _NoReply from None
        event(_log, "motor_connected", port=self.port,
              firmware=".".join(str(v) for v in caps.firmware), boot_id=caps.boot_id,
              state=P.STATE_NAMES.get(status.state, "unknown"))

    def _go_offline(self, reason: str) -> None:
        if not self._offline:
            event(_log, "motor_offline", level=logging.WARNING, port=self.port, reason=reason)
        self._offline = True

    def _heartbeat_loop(self) -> None:
        period = self._settings.heartbeat_s
        next_t = self._clock.now()
        while True:
            next_t += period
            if not self._clock.sleep_until(next_t, self._stop):
                return
            now = self._clock.now()
            if now > next_t + period:  # a virtual clock jumped: do not replay missed beats
                next_t = now
            try:
                if self._ensure_connected():
                    self._decode_status(self._request(P.HEARTBEAT, b"", self._next_seq()))
            except (_NoReply, MotorError):
                continue  # already OFFLINE; the next beat tries again

    # --- requests ----------------------------------------------------------------------------

    def _next_seq(self) -> int:
        with self._seq_lock:
            self._seq = self._seq % 0xFFFF + 1  # 1..65535, 0 is the controller's
            return self._seq

    @contextlib.contextmanager
    def _expect(self, seq: int) -> Iterator[None]:
        with self._inbox:
            self._waiting[seq] = deque()
        try:
            yield
        finally:
            with self._inbox:
                self._waiting.pop(seq, None)

    def _wait_reply(self, seq: int, timeout_s: float, naks_seen: int | None) -> P.Frame | None:
        """The next frame for `seq`, or None on timeout or (if `naks_seen` is given) a NAK."""
        deadline = time.monotonic() + timeout_s
        with self._inbox:
            queue = self._waiting[seq]
            while not queue:
                if naks_seen is not None and self._naks != naks_seen:
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._inbox.wait(left)
            return queue.popleft()

    def _send(self, frame: bytes, connect: bool) -> bool:
        if connect and not self._ensure_connected():
            return False
        transport = self._transport
        if transport is None:
            return False
        try:
            transport.send(frame)
        except LinkDown:
            self._go_offline("port_lost")
            return False
        return True

    def _request(self, msg_type: int, payload: bytes, seq: int, *,
                 connect: bool = True) -> P.Frame:
        """Send one request and wait for the reply with the same seq."""
        with self._expect(seq):
            return self._resend_until_reply(P.encode_frame(msg_type, seq, payload), seq,
                                            connect)

    def _checked(self, msg_type: int, payload: bytes) -> P.Frame:
        """exchange(), but an ERROR reply becomes a MotorError naming the error."""
        frame = self.exchange(msg_type, payload)
        if frame.msg_type == P.ERROR:
            name, _ = self._decode_error(frame)
            raise MotorError(f"controller refused {P.TYPE_NAMES.get(msg_type, 'request')}: "
                             f"{name}", code=name)
        return frame

    # --- dispense ----------------------------------------------------------------------------

    def _dispense(self, length_mm: int) -> DispenseResult:
        if not self._ensure_connected() or self._caps is None or self._boot_id is None:
            return DispenseResult(ok=False, dispensed_mm=0, error="offline")
        seq = self._next_seq()
        # Bound to this controller boot: after a reset the controller refuses it, so a
        # resend can never start a second ribbon for this one decision.
        frame = P.encode_frame(P.DISPENSE, seq, P.u16(length_mm) + P.u16(self._boot_id))
        caps = self._caps
        request_budget = (self._settings.retries + 1) * self._settings.timeout_s
        poll_s = min(0.25, self._settings.heartbeat_s / 2)
        with self._expect(seq):
            try:
                first = self._resend_until_reply(frame, seq)
            except _NoReply:
                # Maybe only the answers were lost and it runs: stop it, ask what went out.
                self._abort_quietly()
                mm, known = self._last_mm_of(seq)
                return DispenseResult(ok=False, dispensed_mm=mm, error="offline", seq=seq,
                                      dispensed_known=known)
            result = self._final(first, seq)
            if result is not None:
                return result
            give_up = time.monotonic() + caps.max_run_ms / 1000.0 + request_budget
            while time.monotonic() < give_up and not self._stop.is_set():  # close() ends it
                reply = self._wait_reply(seq, poll_s, None)
                if reply is not None:
                    result = self._final(reply, seq)
                    if result is not None:
                        return result
                    continue
                # Quiet: resend the same request. It feeds the controller's heartbeat and
                # fetches the stored outcome if the DONE/ERROR frame was lost.
                self._send(frame, connect=True)
        self._abort_quietly()
        mm, known = self._last_mm_of(seq)
        return DispenseResult(ok=False, dispensed_mm=mm, error="timeout", seq=seq,
                              dispensed_known=known)

    def _resend_until_reply(self, frame: bytes, seq: int, connect: bool = True) -> P.Frame:
        """Send `frame` and wait for a reply to `seq` (registered by the caller), resending
        the *same* frame up to `retries` times: at once after a NAK, else after
        `timeout_s`. Raises _NoReply when the budget is spent."""
        timeout = self._settings.timeout_s
        self.counters.requests += 1
        for attempt in range(self._settings.retries + 1):
            if attempt:
                self.counters.resends += 1
            with self._inbox:
                naks_seen = self._naks
            if not self._send(frame, connect):
                self._stop.wait(timeout)  # port gone: pace the reopen attempts
                continue
            reply = self._wait_reply(seq, timeout, naks_seen)
            if reply is not None:
                self._offline = False
                return reply
        self._go_offline("no_reply")
        raise _NoReply

    def _final(self, frame: P.Frame, seq: int) -> DispenseResult | None:
        """DONE/ERROR -> the result; ACK (still running) or anything else -> None."""
        if frame.msg_type == P.DONE:
            try:
                return DispenseResult(ok=True, dispensed_mm=decode_done(frame.payload), seq=seq)
            except PayloadError:
                self.counters.bad_payloads += 1
                return None
        if frame.msg_type == P.ERROR:
            name, mm = self._decode_error(frame)
            known = mm != P.MM_UNKNOWN
            return DispenseResult(ok=False, dispensed_mm=mm if known else 0, error=name,
                                  seq=seq, dispensed_known=known)
        return None

    def _abort_quietly(self) -> None:
        with contextlib.suppress(MotorError):
            self.exchange(P.ABORT)

    def _last_mm_of(self, seq: int) -> tuple[int, bool]:
        """(mm fed for `seq`, known?) from the controller's status. A controller that
        answers but never started `seq` fed 0 mm; one that does not answer cannot say."""
        try:
            status = self._decode_status(self.exchange(P.STATUS))
        except MotorError:
            return 0, False
        return (status.last_mm if status.last_seq == seq else 0), True

    # --- incoming ----------------------------------------------------------------------------

    def _decode_status(self, frame: P.Frame) -> ControllerStatus:
        if frame.msg_type != P.STATUS_REPLY:
            raise MotorError(f"controller sent {P.TYPE_NAMES.get(frame.msg_type, 'junk')} "
                             "instead of status", code="bad_frame")
        try:
            return ControllerStatus.decode(frame.payload)
        except PayloadError:
            self.counters.bad_payloads += 1
            raise MotorError("controller sent a malformed status", code="bad_frame") from None

    def _decode_error(self, frame: P.Frame) -> tuple[str, int]:
        try:
            return decode_error(frame.payload)
        except PayloadError:
            self.counters.bad_payloads += 1
            return "bad_frame", 0

    def _observe(self, state: int | None, boot_id: int, buttons: int | None) -> None:
        """Fold a status/event into the cached state and the button-press count."""
        with self._cache_lock:
            if self._boot_id is not None and boot_id != self._boot_id:
                # The controller restarted: its counter restarted from 0, and it forgot our
                # heartbeat period and session, so greet it again.
                self.counters.controller_resets += 1
                self._need_hello = True
                event(_log, "controller_reset", level=logging.WARNING, boot_id=boot_id)
                self._button_counter = 0 if self._button_counter is not None else None
            self._boot_id = boot_id
            if state is not None:
                self._state_byte = state
            if buttons is not None:
                if self._button_counter is not None:
                    self._pending_presses += (buttons - self._button_counter) & 0xFFFF
                self._button_counter = buttons

    def _on_frame(self, frame: P.Frame) -> None:
        """Reader thread: route one frame (never raises)."""
        if frame.status != P.OK or frame.version != P.VERSION:
            return
        t, seq = frame.msg_type, frame.seq
        try:
            if t == P.EVENT:
                ev = ControllerEvent.decode(frame.payload)
                self._observe(ev.state, ev.boot_id, ev.buttons)
                return
            if t == P.STATUS_REPLY:
                st = ControllerStatus.decode(frame.payload)
                self._observe(st.state, st.boot_id, st.buttons)
        except PayloadError:
            self.counters.bad_payloads += 1
            return
        with self._inbox:
            if t == P.ERROR and seq == P.SEQ_NONE:
                self._naks += 1
                self.counters.naks += 1
                self._inbox.notify_all()
                return
            queue = self._waiting.get(seq)
            if queue is None or len(queue) >= _MAX_QUEUED:
                self.counters.stray_frames += 1
                return
            queue.append(frame)
            self._inbox.notify_all()

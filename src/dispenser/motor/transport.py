"""The serial port under the motor link: open, write, and a reader thread that turns the
byte stream into checked frames.

Kept apart from the request logic (as pyserial keeps its transports apart from protocols)
so the link can be reasoned about as "frames in, frames out, port up or down". When the
device disappears (USB unplug, or the simulator's "unplug" fault) reads and writes fail
with an OSError/SerialException: the transport closes itself and reports `is_open ==
False`; the link decides when to reopen.
"""

from __future__ import annotations

import contextlib
import logging
import termios
import threading
from collections.abc import Callable

import serial

from dispenser.logsafe import event
from dispenser.motor import protocol as P

_log = logging.getLogger("dispenser.motor")

# Reader poll period: bounds how late close() is noticed, not reply latency (reads return
# as soon as bytes arrive).
_READ_TIMEOUT_S = 0.05
_WRITE_TIMEOUT_S = 0.5


class LinkDown(Exception):
    """The port is closed or just failed (device gone)."""


class SerialTransport:
    """One serial device; `on_frame` is called from the reader thread for every frame."""

    def __init__(self, port: str, baud: int, on_frame: Callable[[P.Frame], None]) -> None:
        self.port = port
        self._baud = baud
        self._on_frame = on_frame
        self._serial: serial.Serial | None = None
        self._reader: threading.Thread | None = None
        # Held for every write and every close of the port: pyserial's write on a port closed
        # under it fails with TypeError (its fd is gone), not with an error that says "down".
        self._write_lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._parser = P.FrameParser()
        self._closed_for_good = False
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def is_open(self) -> bool:
        with self._state_lock:
            return self._serial is not None

    @property
    def bad_frames(self) -> int:
        return self._parser.frames_bad

    def open(self) -> None:
        """Open the device and start reading; raises OSError/SerialException if absent,
        LinkDown after close() (a thread that was mid-reconnect when the link closed must
        not reopen the port behind it)."""
        with self._state_lock:
            if self._closed_for_good:
                raise LinkDown("transport closed")
            if self._serial is not None:
                return
            ser = serial.Serial(self.port, self._baud, timeout=_READ_TIMEOUT_S,
                                write_timeout=_WRITE_TIMEOUT_S, exclusive=True)
            ser.reset_input_buffer()
            self._parser.reset()
            self._serial = ser
            self._reader = threading.Thread(target=self._read_loop, args=(ser,),
                                            name="motor-reader", daemon=True)
            self._reader.start()

    def send(self, data: bytes) -> None:
        """Write one or more frames; raises LinkDown if the port is closed or fails."""
        with self._write_lock:
            ser = self._serial
            if ser is None:
                raise LinkDown("port closed")
            try:
                ser.write(data)
                ser.flush()
            # termios.error (not an OSError): tcdrain on a device that went away mid-write
            except (OSError, termios.error, serial.SerialException):
                self._lost(ser, "write")
                raise LinkDown("write failed") from None
            self.bytes_out += len(data)

    def close(self) -> None:
        """Close the port for good and wait for the reader (idempotent)."""
        with self._state_lock:
            self._closed_for_good = True
            ser, self._serial = self._serial, None
            reader, self._reader = self._reader, None
        if ser is not None:
            with self._write_lock:  # a write in progress finishes (write timeout) first
                ser.close()
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout=1.0)

    def _lost(self, ser: serial.Serial, where: str) -> None:
        with self._state_lock:
            if not self._is_current(ser):
                return
            self._serial = None
        event(_log, "motor_port_lost", level=logging.WARNING, port=self.port, during=where)
        with self._write_lock, contextlib.suppress(OSError, serial.SerialException):
            ser.close()

    def _is_current(self, ser: serial.Serial) -> bool:
        return self._serial is ser

    def _read_loop(self, ser: serial.Serial) -> None:
        while True:
            with self._state_lock:
                if not self._is_current(ser):
                    return
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (OSError, serial.SerialException, TypeError, AttributeError):
                # TypeError/AttributeError: pyserial's fd became None under a concurrent close.
                self._lost(ser, "read")
                return
            if not data:
                continue
            self.bytes_in += len(data)
            for frame in self._parser.feed(data):
                self._on_frame(frame)

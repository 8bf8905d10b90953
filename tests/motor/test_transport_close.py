"""Closing the serial transport while another thread is writing: the write finishes on an
open port (or is refused as LinkDown), never reaches pyserial after its port was closed.

Found by CI: `MotorLink.close()` from the service thread while a dispense thread was
sending made pyserial raise TypeError (its fd was already None), which killed the
dispense thread instead of ending the dispense as "link down".
"""

from __future__ import annotations

import os
import pty
import threading
import time
import tty
from collections.abc import Iterator

import pytest
import serial

from dispenser.motor.transport import LinkDown, SerialTransport


@pytest.fixture
def pty_path() -> Iterator[str]:
    controller, device = pty.openpty()
    tty.setraw(device)
    try:
        yield os.ttyname(device)
    finally:
        os.close(device)
        os.close(controller)


def test_close_waits_for_a_write_in_progress(pty_path: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    transport = SerialTransport(pty_path, 115200, lambda frame: None)
    transport.open()
    in_write = threading.Event()
    seen_open_after_pause: list[bool] = []
    real_write = serial.Serial.write

    def slow_write(self: serial.Serial, data: bytes) -> int | None:
        in_write.set()
        time.sleep(0.3)  # close() is called during this pause
        seen_open_after_pause.append(self.is_open)
        return real_write(self, data)

    monkeypatch.setattr(serial.Serial, "write", slow_write)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            transport.send(b"\x00frame")
        except LinkDown:
            pass
        except BaseException as exc:  # the test is about which one escapes
            errors.append(exc)

    writer = threading.Thread(target=send)
    writer.start()
    assert in_write.wait(5)
    transport.close()
    writer.join(5)
    assert not writer.is_alive()
    assert errors == []
    assert seen_open_after_pause == [True]
    assert not transport.is_open
    with pytest.raises(LinkDown):
        transport.send(b"\x00after")


def test_a_closed_transport_never_reopens(pty_path: str) -> None:
    """A dispense or heartbeat thread that was reconnecting when the link closed must not
    open the port again behind it (it would hold the device and a reader thread)."""
    transport = SerialTransport(pty_path, 115200, lambda frame: None)
    transport.open()
    transport.close()
    with pytest.raises(LinkDown):
        transport.open()
    assert not transport.is_open
    assert not any(t.name == "motor-reader" and t.is_alive() for t in threading.enumerate())


def test_a_port_that_vanishes_while_draining_is_link_down(
        pty_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """tcdrain on a port whose device went away (a controller power cycle, USB unplug)
    raises termios.error, which is not an OSError: it must end the send as LinkDown, not
    kill the dispense thread."""
    import termios

    transport = SerialTransport(pty_path, 115200, lambda frame: None)
    transport.open()

    def vanished(self: serial.Serial) -> None:
        raise termios.error(5, "Input/output error")

    monkeypatch.setattr(serial.Serial, "flush", vanished)
    with pytest.raises(LinkDown, match="write failed"):
        transport.send(b"\x00frame")
    assert not transport.is_open
    transport.close()

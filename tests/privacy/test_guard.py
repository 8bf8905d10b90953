"""The audit-hook guard refuses sockets and file writes outside its allow-list."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispenser.privacy import guard


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Path]:
    allowed = tmp_path / "log"
    allowed.mkdir()
    guard.install([allowed])
    try:
        yield allowed
    finally:
        guard.uninstall()


def test_socket_creation_is_refused(guarded: Path) -> None:
    with pytest.raises(PermissionError, match=r"network access \(socket.__new__\)"):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    assert "network access (socket.__new__)" in guard.refusals()


def test_name_lookup_is_refused(guarded: Path) -> None:
    with pytest.raises(PermissionError, match=r"socket\.getaddrinfo"):
        socket.getaddrinfo("localhost", 80)


def test_file_write_outside_allow_list_is_refused(guarded: Path, tmp_path: Path) -> None:
    target = tmp_path / "frame.png"
    for mode in ("wb", "ab", "xb", "r+b"):
        with pytest.raises(PermissionError, match="file write to"):
            open(target, mode)  # noqa: SIM115
    assert not target.exists()


def test_os_open_with_write_flags_is_refused(guarded: Path, tmp_path: Path) -> None:
    import os

    with pytest.raises(PermissionError):
        os.open(tmp_path / "x.bin", os.O_WRONLY | os.O_CREAT)


def test_allowed_destination_and_reads_pass(guarded: Path, tmp_path: Path) -> None:
    (guarded / "dispenser.log").write_text("event\n")
    assert Path(__file__).read_text()
    with open("/dev/null", "wb") as sink:
        sink.write(b"x")


def test_guard_switched_off_lets_everything_through(tmp_path: Path) -> None:
    guard.install([])
    guard.uninstall()
    (tmp_path / "ok.txt").write_text("x")
    socket.socket().close()

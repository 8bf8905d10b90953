"""The audit-hook guard refuses sockets and file writes outside its allow-list."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
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
    with pytest.raises(PermissionError):
        os.open(tmp_path / "x.bin", os.O_WRONLY | os.O_CREAT)


def test_allowed_destination_and_reads_pass(guarded: Path, tmp_path: Path) -> None:
    (guarded / "dispenser.log").write_text("event\n")
    assert Path(__file__).read_text()
    with open("/dev/null", "wb") as sink:
        sink.write(b"x")


def test_guard_switched_off_lets_everything_through(tmp_path: Path) -> None:
    guard.install([])
    with pytest.raises(PermissionError):      # on: refused
        socket.socket().close()
    guard.uninstall()
    refused = guard.refusals()
    (tmp_path / "ok.txt").write_text("x")     # off: the same calls go through
    with socket.socket() as sock:
        assert sock.fileno() >= 0
    assert (tmp_path / "ok.txt").read_text() == "x"
    assert guard.refusals() == refused        # and nothing more was refused


# --- walking around the allow-list: each of these passed a raw string-prefix check -------

def test_dotdot_out_of_a_device_folder_is_refused(guarded: Path, tmp_path: Path) -> None:
    target = f"/dev/pts/../..{tmp_path}/x"
    with pytest.raises(PermissionError, match="file write to"):
        open(target, "w")  # noqa: SIM115
    assert not (tmp_path / "x").exists()


def test_dotdot_out_of_the_allowed_folder_is_refused(guarded: Path, tmp_path: Path) -> None:
    with pytest.raises(PermissionError, match="file write to"):
        open(f"{guarded}/../x", "w")  # noqa: SIM115
    assert not (tmp_path / "x").exists()


def test_sibling_folder_sharing_the_allowed_prefix_is_refused(guarded: Path,
                                                              tmp_path: Path) -> None:
    sibling = tmp_path / (guarded.name + "X")
    guard.uninstall()
    sibling.mkdir()
    guard.install([guarded])
    with pytest.raises(PermissionError, match="file write to"):
        open(sibling / "f", "w")  # noqa: SIM115
    assert not (sibling / "f").exists()


def test_a_pycache_folder_is_not_a_way_out(guarded: Path, tmp_path: Path) -> None:
    cache = tmp_path / "any" / "__pycache__"
    guard.uninstall()
    cache.mkdir(parents=True)
    guard.install([guarded])
    for name in ("faces.pyc.csv", "kernels.nbi", "mod.cpython-311.pyc"):
        with pytest.raises(PermissionError, match="file write to"):
            open(cache / name, "wb")  # noqa: SIM115
    assert list(cache.iterdir()) == []


def test_symlink_out_of_the_allowed_folder_is_refused(guarded: Path, tmp_path: Path) -> None:
    guard.uninstall()
    (guarded / "link").symlink_to(tmp_path)
    guard.install([guarded])
    with pytest.raises(PermissionError, match="file write to"):
        open(guarded / "link" / "x", "w")  # noqa: SIM115
    assert not (tmp_path / "x").exists()


def test_rename_replace_link_and_symlink_out_of_the_allow_list_are_refused(
        guarded: Path, tmp_path: Path) -> None:
    inside = guarded / "status.json"
    inside.write_text("{}")
    outside = tmp_path / "faces.bin"
    for move in (os.rename, os.replace, os.link, os.symlink):
        with pytest.raises(PermissionError, match=r"os\.(rename|link|symlink) of"):
            move(inside, outside)
        assert not outside.exists() and not outside.is_symlink()
    os.replace(inside, guarded / "status2.json")  # inside the allowed folder: fine


@pytest.mark.parametrize("lookup", [
    lambda: socket.gethostbyname("localhost"),
    lambda: socket.gethostbyname_ex("localhost"),
    lambda: socket.gethostbyaddr("127.0.0.1"),
    lambda: socket.getnameinfo(("127.0.0.1", 80), 0),
], ids=["gethostbyname", "gethostbyname_ex", "gethostbyaddr", "getnameinfo"])
def test_every_name_lookup_is_refused(guarded: Path, lookup: Callable[[], object]) -> None:
    with pytest.raises(PermissionError, match="network access"):
        lookup()


def test_process_creation_is_refused(guarded: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(PermissionError, match=r"subprocess\.Popen"):
        subprocess.run(["touch", str(marker)], check=False)
    with pytest.raises(PermissionError, match=r"os\.system"):
        os.system(f"touch {marker}")
    with pytest.raises(PermissionError, match=r"os\.posix_spawn"):
        os.posix_spawn("/usr/bin/touch", ["touch", str(marker)], os.environ)
    with pytest.raises(PermissionError, match=r"os\.fork"):
        if os.fork() == 0:
            os._exit(0)  # only reached on a guard that let the fork through
    assert not marker.exists()


_EXEC_UNDER_GUARD = """
import os, sys
from dispenser.privacy import guard
guard.install([])
for call in (lambda: os.execv("/bin/true", ["true"]),
             lambda: os.spawnv(os.P_WAIT, "/bin/true", ["true"])):
    try:
        call()
        print("allowed")
    except PermissionError:
        print("refused")
"""


def test_exec_and_spawn_are_refused() -> None:
    """In a child: an exec that got through would replace the test process itself."""
    done = subprocess.run([sys.executable, "-c", _EXEC_UNDER_GUARD], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.stdout.split() == ["refused", "refused"], done.stderr[-1000:]


def test_bytecode_writing_is_off_while_the_guard_is_on(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    guard.install([])
    try:
        assert sys.dont_write_bytecode
    finally:
        guard.uninstall()
    assert not sys.dont_write_bytecode

"""A last line of defence against a dependency that phones home or writes to disk.

At service start `install()` adds a `sys.addaudithook` hook that raises `PermissionError`
on:

- any socket creation, bind, connect or send, and any host name or address lookup
  (`getaddrinfo`, `gethostbyname`, `gethostbyaddr`, `getnameinfo`): the device needs no
  network;
- any process creation (`subprocess`, `os.system`, `os.exec*`, `os.spawn*`,
  `os.posix_spawn`, `os.fork`, `os.forkpty`): a child would run outside this hook;
- any `open()` for writing (write/append/create/truncate mode or flags), `os.rename`,
  `os.replace`, `os.link` or `os.symlink` that touches a path outside the allow-list: the
  allowed directories (the status directory, numba's `NUMBA_CACHE_DIR`) and the files inside
  them, the serial devices (`/dev/tty*`, `/dev/pts/*`, `/dev/ptmx`) and `/dev/null`.

Paths are compared after `os.path.realpath` (symlinks and `..` resolved) and directory by
directory, never as raw string prefixes: `/dev/pts/../../tmp/x`, `<status dir>/../x` and
`<status dir>X/f` are all outside. There is no exception for `__pycache__`: the store's numba
kernels are compiled when their module is imported, before the guard goes on, and
`install()` stops Python writing bytecode (`sys.dont_write_bytecode`) while it is on.

The hook sees only what Python code does (C libraries that write directly are covered by
the systemd unit's `PrivateNetwork=yes` and `ProtectSystem=strict` instead; docs/privacy.md).
Audit hooks cannot be removed, so the guard is switched on and off through `GUARD` rather
than installed more than once; tests switch it off again when they are done.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_NETWORK_EVENTS = frozenset({
    "socket.__new__", "socket.bind", "socket.connect", "socket.sendto", "socket.sendmsg",
    "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
    "socket.getnameinfo"})
_PROCESS_EVENTS = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
    "os.forkpty"})
# Events whose first two arguments are both paths that end up written (or linked).
_TWO_PATH_EVENTS = frozenset({"os.rename", "os.link", "os.symlink"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
# Device files a serial controller or a sink may be: exact names, or a name prefix within
# one exact directory (e.g. /dev/ttyACM0, /dev/pts/3).
_DEVICE_FILES = frozenset({"/dev/null", "/dev/ptmx", "/dev/tty"})
_DEVICE_PREFIXES = (("/dev", "tty"), ("/dev/pts", ""))


@dataclass
class _GuardState:
    active: bool = False
    installed: bool = False
    allowed_dirs: tuple[str, ...] = ()
    wrote_bytecode: bool = True
    refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


GUARD = _GuardState()


def _is_write(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "waxs+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def path_allowed(path: str) -> bool:
    """True when a write to `path` (after resolving symlinks and `..`) is on the allow-list."""
    real = os.path.realpath(path)
    if real in _DEVICE_FILES:
        return True
    parent, name = os.path.split(real)
    if any(parent == d and name.startswith(p) and name != p for d, p in _DEVICE_PREFIXES):
        return True
    return any(_within(real, d) for d in GUARD.allowed_dirs)


def _refuse(what: str) -> None:
    with GUARD.lock:
        if len(GUARD.refusals) < 1000:
            GUARD.refusals.append(what)
    raise PermissionError(f"dispenser privacy guard: {what} refused (no network, no disk)")


def _path_text(path: Any) -> str | None:
    """The path an event names, or None for a file descriptor (already checked when opened)."""
    if path is None or isinstance(path, int):
        return None
    return os.fsdecode(path)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not GUARD.active:
        return
    if event in _NETWORK_EVENTS:
        _refuse(f"network access ({event})")
    elif event in _PROCESS_EVENTS:
        _refuse(f"process creation ({event})")
    elif event == "open" and args:
        path, mode, flags = [*args, None, None][:3]
        text = _path_text(path)
        if text is not None and _is_write(mode, flags) and not path_allowed(text):
            _refuse(f"file write to {text}")
    elif event in _TWO_PATH_EVENTS and len(args) >= 2:
        for text in (_path_text(args[0]), _path_text(args[1])):
            if text is not None and not path_allowed(text):
                _refuse(f"{event} of {text}")


def install(allowed_write_dirs: Iterable[str | Path] = ()) -> None:
    """Switch the guard on; `allowed_write_dirs` are the folders whose files may be written
    (numba's `NUMBA_CACHE_DIR` is added when set)."""
    numba_cache = os.environ.get("NUMBA_CACHE_DIR")
    allowed = [os.path.realpath(p) for p in allowed_write_dirs]
    if numba_cache:
        allowed.append(os.path.realpath(numba_cache))
    GUARD.allowed_dirs = tuple(allowed)
    if not GUARD.installed:
        sys.addaudithook(_hook)
        GUARD.installed = True
    if not GUARD.active:
        GUARD.wrote_bytecode = not sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    GUARD.active = True


def uninstall() -> None:
    """Switch the guard off (the hook stays registered but inert)."""
    if GUARD.active:
        sys.dont_write_bytecode = not GUARD.wrote_bytecode
    GUARD.active = False


def refusals() -> list[str]:
    """What the guard refused since start (paths and event names only, never data)."""
    with GUARD.lock:
        return list(GUARD.refusals)

"""A last line of defence against a dependency that phones home or writes to disk.

At service start `install()` adds a `sys.addaudithook` hook that raises `PermissionError`
on:

- any socket creation, bind or connect (`socket.__new__`, `socket.bind`,
  `socket.connect`, `socket.sendto`, `socket.getaddrinfo`): the device needs no network;
- any `open()` for writing (write/append/create/truncate mode or flags) of a path outside
  the allow-list: the log destination, the runtime status file, the serial device
  (`/dev/tty*`, `/dev/pts/*`, `/dev/ptmx`), `/dev/null`, and compiled-code caches
  (`__pycache__/*.pyc`, numba's `*.nbi`/`*.nbc` index and code files, `NUMBA_CACHE_DIR`),
  which hold code, never data.

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

_SOCKET_EVENTS = frozenset({"socket.__new__", "socket.bind", "socket.connect",
                            "socket.sendto", "socket.sendmsg", "socket.getaddrinfo"})
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_ALWAYS_ALLOWED_PREFIXES = ("/dev/tty", "/dev/pts/", "/dev/ptmx", "/dev/null",
                            "/dev/serial/")


@dataclass
class _GuardState:
    active: bool = False
    installed: bool = False
    allowed_prefixes: tuple[str, ...] = ()
    refusals: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


GUARD = _GuardState()


def _is_write(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str) and any(c in mode for c in "waxs+"):
        return True
    return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)


_CODE_CACHE_SUFFIXES = (".pyc", ".nbi", ".nbc")


def _is_code_cache(path: str) -> bool:
    p = Path(path)  # atomic writers add a temporary suffix after the real one
    return p.parent.name == "__pycache__" and any(s in p.name for s in _CODE_CACHE_SUFFIXES)


def _path_allowed(path: str) -> bool:
    if _is_code_cache(path):
        return True
    real = os.path.realpath(path)
    prefixes = _ALWAYS_ALLOWED_PREFIXES + GUARD.allowed_prefixes
    return any(real.startswith(p) or path.startswith(p) for p in prefixes)


def _refuse(what: str) -> None:
    with GUARD.lock:
        if len(GUARD.refusals) < 1000:
            GUARD.refusals.append(what)
    raise PermissionError(f"dispenser privacy guard: {what} refused (no network, no disk)")


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not GUARD.active:
        return
    if event in _SOCKET_EVENTS:
        _refuse(f"network access ({event})")
    elif event == "open" and args:
        path, mode, flags = [*args, None, None][:3]
        if isinstance(path, int) or path is None:
            return  # fdopen of an already-open descriptor: the open itself was checked
        text = os.fsdecode(path)
        if _is_write(mode, flags) and not _path_allowed(text):
            _refuse(f"file write to {text}")


def install(allowed_write_paths: Iterable[str | Path] = ()) -> None:
    """Switch the guard on; `allowed_write_paths` are files or folders that may be written."""
    numba_cache = os.environ.get("NUMBA_CACHE_DIR")
    allowed = [os.path.realpath(p) for p in allowed_write_paths]
    if numba_cache:
        allowed.append(os.path.realpath(numba_cache))
    GUARD.allowed_prefixes = tuple(allowed)
    if not GUARD.installed:
        sys.addaudithook(_hook)
        GUARD.installed = True
    GUARD.active = True


def uninstall() -> None:
    """Switch the guard off (the hook stays registered but inert)."""
    GUARD.active = False


def refusals() -> list[str]:
    """What the guard refused since start (paths and event names only, never data)."""
    with GUARD.lock:
        return list(GUARD.refusals)

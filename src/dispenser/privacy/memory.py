"""Memory hygiene for buffers that hold frames, crops, templates and keys.

Why: a template that is overwritten in our buffer can still survive in swap or in a core
dump. So every long-lived biometric buffer is allocated once, locked with `mlock(2)` so the
kernel never writes it to swap, and overwritten with zeros when its content is no longer
needed; and the process disables core dumps before it sees its first face.

`mlock` needs `RLIMIT_MEMLOCK` headroom. Where the limit is too low we warn once, in one
line naming the limit and the systemd setting that raises it (`LimitMEMLOCK=`, see
hw/dispenser.service and docs/privacy.md), and carry on: refusing to run would not protect
anyone, and the other defences (zeroisation, key shredding) still hold.
"""

from __future__ import annotations

import ctypes
import logging
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

_log = logging.getLogger(__name__)

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


def _libc() -> ctypes.CDLL | None:
    # dlopen(NULL): the symbols already in the process, libc's included. (ctypes.util's
    # find_library would run ldconfig/gcc and write a temporary file: no disk writes.)
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True)


_LIBC = _libc()


@dataclass
class LockStats:
    """How many bytes we asked to lock, and how many the OS refused (counters only)."""

    locked_bytes: int = 0
    refused_bytes: int = 0
    warned: bool = False


LOCKS = LockStats()


def lock_pages(buffer: np.ndarray) -> bool:
    """Lock `buffer`'s pages in RAM (never swapped). Returns False (and warns once) if the
    OS refuses; the buffer stays usable either way."""
    if buffer.nbytes == 0:
        return True
    if _LIBC is None:
        LOCKS.refused_bytes += buffer.nbytes
        return False
    addr = ctypes.c_void_p(buffer.ctypes.data)
    if _LIBC.mlock(addr, ctypes.c_size_t(buffer.nbytes)) == 0:
        LOCKS.locked_bytes += buffer.nbytes
        return True
    LOCKS.refused_bytes += buffer.nbytes
    if not LOCKS.warned:
        LOCKS.warned = True
        soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        _log.warning(
            "mlock refused for %d bytes (RLIMIT_MEMLOCK soft limit %s bytes): templates may "
            "reach swap; raise it with LimitMEMLOCK= in the systemd unit (docs/privacy.md)",
            buffer.nbytes, "unlimited" if soft == resource.RLIM_INFINITY else soft)
    return False


def unlock_pages(buffer: np.ndarray) -> None:
    """Undo `lock_pages` (call after zeroising, before the buffer is freed)."""
    if _LIBC is not None and buffer.nbytes:
        _LIBC.munlock(ctypes.c_void_p(buffer.ctypes.data), ctypes.c_size_t(buffer.nbytes))


def locked_buffer(shape: tuple[int, ...], dtype: type[np.generic] | np.dtype[np.generic]
                  ) -> np.ndarray:
    """A zero-filled array whose pages are locked in RAM where the OS allows."""
    buffer = np.zeros(shape, dtype=dtype)
    lock_pages(buffer)
    return buffer


def zeroise(buffer: np.ndarray) -> None:
    """Overwrite every element of `buffer` with zero bits, in place (views included).

    Zero is all-zero bits for every integer and IEEE float type we use (+0.0)."""
    buffer[...] = 0


def disable_core_dumps() -> bool:
    """RLIMIT_CORE = 0 and PR_SET_DUMPABLE = 0: no core file, no ptrace by other users.

    Returns True when both took effect (Linux); the service calls this before it opens the
    camera. Non-dumpable also hides /proc/<pid>/mem from other unprivileged processes.
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _LIBC is None:
        return False
    _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    return core_dumps_disabled()


@contextmanager
def own_memory_readable() -> Iterator[None]:
    """Let this process open its own /proc/self/mem for the duration of the block.

    A non-dumpable process (`disable_core_dumps`) gets root-owned /proc/self files, so an
    unprivileged service user could not audit its own memory. The block makes the process
    dumpable again and restores the previous state after it; RLIMIT_CORE stays 0 all along,
    so no core file can be written in between.
    """
    was_dumpable = _LIBC is None or _LIBC.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) != 0
    if not was_dumpable:
        _LIBC.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)  # type: ignore[union-attr]
    try:
        yield
    finally:
        if not was_dumpable:
            _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # type: ignore[union-attr]


def core_dumps_disabled() -> bool:
    """True when no core dump can be written for this process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if (soft, hard) != (0, 0):
        return False
    return _LIBC is None or _LIBC.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0

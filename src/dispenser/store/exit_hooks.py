"""Zeroise every open store when the process is told to stop (SIGTERM, SIGINT).

Normal exit and garbage collection are covered by each store's `weakref.finalize` (which
Python also runs at interpreter exit). Signals need a handler, and a library must install
one carefully:

- Only the main thread may install signal handlers (a CPython rule). `install()` is called
  by every `TemplateStore`; when it runs outside the main thread it does nothing and
  returns False, and the program should call it once from the main thread.
- It installs at most once per signal and **chains** to the handler that was there before:
  after zeroising, a Python handler is called as it would have been; the default action
  (`SIG_DFL`, e.g. SIGTERM terminates) is restored and the signal re-raised so the process
  dies exactly as it would have, with the same exit status; an ignored signal stays ignored.
  For SIGINT the previous handler is normally Python's `default_int_handler`, so
  `KeyboardInterrupt` is still raised after the buffers are zero.
- The handler does not take the store lock (the interrupted main thread may hold it): it
  overwrites the buffers directly and marks the store closed; an operation that was
  interrupted re-zeroises before it returns (see `TemplateStore`).

A handler installed later by someone else replaces ours unless it chains to it too.
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Protocol


class Zeroisable(Protocol):
    """What the signal handler needs from a store."""

    def emergency_zeroise(self) -> None:
        """Overwrite every buffer with zeros without taking any lock; close the store."""


_HANDLED = (signal.SIGTERM, signal.SIGINT)
_stores: weakref.WeakSet[Zeroisable] = weakref.WeakSet()
_previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}
_install_lock = threading.Lock()


def track(store: Zeroisable) -> None:
    """Zeroise `store` on SIGTERM/SIGINT for as long as it is alive."""
    _stores.add(store)


def zeroise_all() -> None:
    """Zeroise every tracked store now."""
    for store in list(_stores):
        store.emergency_zeroise()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    zeroise_all()
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL, or a handler installed from C that Python cannot call
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def install() -> bool:
    """Install the chaining handlers once; False when not called from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return False
    with _install_lock:
        for signum in _HANDLED:
            if signum in _previous:  # once per process: never chain to ourselves
                continue
            _previous[signum] = signal.getsignal(signum)
            signal.signal(signum, _on_signal)
    return True

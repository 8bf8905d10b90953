"""Ctrl-C that lands inside a library instead of between our own lines.

A SIGINT is turned into KeyboardInterrupt by Python at the next bytecode of the main
thread. During onnxruntime's native import that bytecode can be a Python callback run
from C++ (an audit hook, a nested import): there the KeyboardInterrupt either becomes the
library's own `ImportError: initialization failed`, or cannot propagate at all and
pybind11 aborts the process (`terminate called after throwing ... KeyboardInterrupt`,
SIGABRT). `import_deferring_ctrl_c` holds the signal until the import is over;
`caused_by_ctrl_c` recognises the errors that slipped through anyway.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from types import FrameType, ModuleType


def import_deferring_ctrl_c(name: str) -> ModuleType:
    """`import name`, with a Ctrl-C pressed meanwhile delivered once the import is done.

    Only the main thread receives Python signal handlers, so elsewhere (and for a module
    already imported) this is a plain import."""
    if name in sys.modules or threading.current_thread() is not threading.main_thread():
        return importlib.import_module(name)
    pressed: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        pressed.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        module = importlib.import_module(name)
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed:  # to whatever handler was in place, as if pressed just now
            signal.raise_signal(signal.SIGINT)
    return module


def caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether `exc` is, or was raised while handling, a Ctrl-C: pressed during a library's
    import it surfaces as that library's own error (onnxruntime's `ImportError:
    initialization failed`, raised from KeyboardInterrupt), which must still stop the
    command with exit 130 rather than be reported as the library failing."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, KeyboardInterrupt):
            return True
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return False

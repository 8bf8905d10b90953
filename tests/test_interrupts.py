"""Ctrl-C during a library import: held until the import is over, then delivered."""

from __future__ import annotations

import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispenser.interrupts import caused_by_ctrl_c, import_deferring_ctrl_c

# A module whose import is "pressed Ctrl-C" halfway: a plain import stops at the signal
# (in onnxruntime's native init that stop aborted the process), a deferring one finishes.
_PRESSED_MIDWAY = textwrap.dedent("""
    import signal
    signal.raise_signal(signal.SIGINT)
    finished = True
""")


@pytest.fixture
def pressed_midway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"pressed_midway_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(_PRESSED_MIDWAY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    # Python's own Ctrl-C handler, whatever an earlier test in this process left installed
    # (a store zeroises on SIGINT, for one): the tests say what happens to *that* handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield name
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_the_import_is_raised_once_the_import_is_complete(
        pressed_midway: str) -> None:
    with pytest.raises(KeyboardInterrupt):
        import_deferring_ctrl_c(pressed_midway)
    assert sys.modules[pressed_midway].finished is True
    sys.modules.pop(pressed_midway)


def test_the_held_ctrl_c_goes_to_the_handler_in_place_before(
        pressed_midway: str) -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        module = import_deferring_ctrl_c(pressed_midway)
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert module.finished is True and seen == [signal.SIGINT]
    assert callable(after) and after.__name__ == "<lambda>"
    sys.modules.pop(pressed_midway)


def test_an_error_raised_from_ctrl_c_is_recognised_and_others_are_not() -> None:
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise ImportError("initialization failed") from interrupt
    except ImportError as exc:
        assert caused_by_ctrl_c(exc)
    assert not caused_by_ctrl_c(ImportError("no module named x"))

"""Shared fixtures: a virtual clock, and the repository root for files tests read."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispenser.clock import VirtualClock

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"


@pytest.fixture
def repo_root() -> Path:
    """The checkout's root (for files that ship in the repo, not in the package)."""
    return REPO_ROOT


@pytest.fixture
def data_dir() -> Path:
    """tests/data: everything a test needs is copied here (no ../shared at test time)."""
    return DATA_DIR


@pytest.fixture
def clock() -> VirtualClock:
    """A clock that moves only when the test says so (starts at t = 1000 s)."""
    return VirtualClock(start=1000.0)


@pytest.fixture(autouse=True)
def _drop_stream_handlers_left_by_commands() -> Iterator[None]:
    """Remove the stderr handler a command run in-process installed, and put the root
    level back: left in place, the handler writes to the stream pytest captured for that
    test, which is closed by the time a later test logs ("I/O operation on closed file").
    pytest's own capture handlers are a subclass and are left to pytest."""
    root = logging.getLogger()
    before, level = set(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)

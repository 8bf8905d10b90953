"""Shared fixtures: a virtual clock, and the repository root for files tests read."""

from __future__ import annotations

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

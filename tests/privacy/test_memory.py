"""Buffers are locked against swap, zeroised on request, and core dumps are disabled."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from dispenser.privacy import memory


def test_locked_buffer_is_zero_and_counted() -> None:
    before = memory.LOCKS.locked_bytes + memory.LOCKS.refused_bytes
    buf = memory.locked_buffer((4, 128), np.float32)
    assert buf.shape == (4, 128) and not buf.any()
    assert memory.LOCKS.locked_bytes + memory.LOCKS.refused_bytes == before + buf.nbytes
    memory.unlock_pages(buf)


def test_zeroise_overwrites_every_byte_including_views() -> None:
    buf = np.random.default_rng(0).standard_normal((8, 128)).astype(np.float32)
    memory.zeroise(buf[2:5])
    assert not buf[2:5].view(np.uint8).any()
    assert buf[0].any()
    memory.zeroise(buf)
    assert not buf.view(np.uint8).any()


def test_core_dumps_disabled_in_a_fresh_process() -> None:
    code = ("from dispenser.privacy import memory; "
            "assert not memory.core_dumps_disabled(); "
            "print(memory.disable_core_dumps(), memory.core_dumps_disabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.split() == ["True", "True"]

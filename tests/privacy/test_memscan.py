"""The memory scanner finds live copies (positive control) and nothing once zeroised."""

from __future__ import annotations

import numpy as np
import pytest

from dispenser.privacy.memscan import scan_own_memory


def test_scanner_finds_a_live_copy_and_none_after_zeroisation() -> None:
    live = np.random.default_rng(7).standard_normal((3, 128)).astype(np.float32)
    reference = live.copy()
    found = scan_own_memory(reference)
    assert found.hits == (1, 1, 1)
    assert found.bytes_scanned > 10_000_000 and found.regions_unreadable == 0
    live[...] = 0
    assert scan_own_memory(reference).total_hits == 0


def test_pattern_straddling_a_chunk_boundary_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    from dispenser.privacy import memscan

    monkeypatch.setattr(memscan, "_CHUNK", 4096)
    live = np.random.default_rng(8).standard_normal((64, 128)).astype(np.float32)
    reference = live.copy()
    assert scan_own_memory(reference).hits == (1,) * 64


def test_empty_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        scan_own_memory(np.zeros((0, 128), np.float32))

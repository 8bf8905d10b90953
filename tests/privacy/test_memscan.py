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


def test_patterns_straddling_chunk_boundaries_are_found_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The chunking on its own, on a synthetic region: copies placed across, before, after
    and exactly at chunk boundaries, at odd byte offsets, are each counted exactly once."""
    import io

    from dispenser.privacy import memscan

    chunk = 4096
    monkeypatch.setattr(memscan, "_CHUNK", chunk)
    patterns = np.random.default_rng(8).standard_normal((3, 128)).astype(np.float32)
    flat = patterns.view(np.uint8).reshape(3, -1)
    region = bytearray(8 * chunk)
    places = {0: [chunk - 100, 3 * chunk + 1], 1: [2 * chunk, 5 * chunk - 511],
              2: [7 * chunk - 512]}
    for k, starts in places.items():
        for start in starts:
            region[start:start + 512] = flat[k].tobytes()
    buf = bytearray(chunk + 511)
    hits = [0, 0, 0]
    read = memscan._scan_region(io.BytesIO(bytes(region)), 0, len(region), buf,
                                memscan._Finder(flat), hits)
    assert read == len(region)
    assert hits == [2, 2, 1]


def test_empty_reference_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        scan_own_memory(np.zeros((0, 128), np.float32))

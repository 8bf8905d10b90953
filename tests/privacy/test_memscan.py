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


def test_an_unprivileged_non_dumpable_process_can_scan_itself() -> None:
    """The board runs as a service user with core dumps off (non-dumpable): the scan must
    still open its own memory, and leave the process non-dumpable afterwards."""
    import os
    import subprocess
    import sys

    # Everything is imported (and lazily loaded codecs warmed up by a first scan) before
    # dropping to 'nobody', who may not read this machine's Python installation.
    code = (
        "import os, numpy as np\n"
        "from dispenser.privacy import memory\n"
        "from dispenser.privacy.memscan import scan_own_memory\n"
        "live = np.random.default_rng(3).standard_normal((1, 128)).astype(np.float32)\n"
        "ref = live.copy()\n"
        "scan_own_memory(ref)\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "memory.disable_core_dumps()\n"
        "print(os.geteuid(), scan_own_memory(ref).hits[0], memory.core_dumps_disabled())\n")
    env = {**os.environ, "HOME": "/tmp", "NUMBA_CACHE_DIR": "/tmp"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False, env=env)
    assert out.returncode == 0, out.stderr[-1500:]
    uid, hits, still_disabled = out.stdout.split()
    assert uid != "0" and int(hits) >= 1 and still_disabled == "True"


def test_pixel_derived_floats_are_anchored_off_their_zero_bytes() -> None:
    """(x - 127.5) / 128 floats have zero low mantissa bytes; they must not make every zero
    word of memory a candidate, and must still be found."""
    from dispenser.privacy.memscan import _anchor_offset

    pixels = np.random.default_rng(9).integers(0, 256, (2, 48 * 48), dtype=np.uint8)
    live = ((pixels.astype(np.float32) - 127.5) / 128.0).astype(np.float32)
    row = live[0].view(np.uint8)
    at = _anchor_offset(row)
    assert row[at] and row[at + 1]
    reference = live.copy()
    assert scan_own_memory(reference).hits == (1, 1)
    with pytest.raises(ValueError, match="adjacent non-zero"):
        _anchor_offset(np.zeros(16, np.uint8))


def test_a_pattern_across_two_adjacent_mappings_is_found_once() -> None:
    """The kernel splits one allocation into several mappings when part of it is locked or
    protected (page granularity: the store and the models mlock their buffers): a template
    allocated across such a boundary lies in two mappings and must still count once."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    area = mmap.mmap(-1, 2 * page, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    window = ctypes.c_char.from_buffer(area)
    start = ctypes.addressof(window)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    pattern = np.random.default_rng(11).standard_normal((1, 128)).astype(np.float32)
    try:
        area[page - 200:page + 312] = memoryview(pattern).cast("B")  # no temporary copy
        assert libc.mprotect(start + page, page, mmap.PROT_READ) == 0, ctypes.get_errno()
        with open("/proc/self/maps", encoding="ascii") as maps:  # the split is real
            assert any(line.startswith(f"{start + page:x}-") for line in maps)
        assert scan_own_memory(pattern).hits == (1,)
    finally:
        libc.mprotect(start + page, page, mmap.PROT_READ | mmap.PROT_WRITE)
        area[:] = bytes(2 * page)
        del window
        area.close()


def test_a_live_pattern_counts_once_at_every_byte_offset_scan_after_scan() -> None:
    """Whatever its alignment, a live pattern counts exactly once, and repeated scans leave
    nothing behind that a later scan would count."""
    patterns = np.random.default_rng(12).standard_normal((8, 128)).astype(np.float32)
    holders = [bytearray(600) for _ in range(8)]
    for offset, holder in enumerate(holders):  # written without a temporary copy
        holder[offset:offset + 512] = memoryview(patterns[offset]).cast("B")
    for _ in range(5):
        assert scan_own_memory(patterns).hits == (1,) * 8
    for holder in holders:
        holder[:] = bytes(600)
    assert scan_own_memory(patterns).total_hits == 0


def test_searching_a_chunk_makes_no_copy_of_it() -> None:
    """The search reads the chunk in place. A scratch copy of a chunk that holds a pattern,
    freed but not overwritten, is found again later in the same scan: numpy copies unaligned
    input into scratch buffers, which made the positive control of the embedder's memory
    test count 2 instead of 1 on emulated arm64 (1.4 MB allocated per chunk then)."""
    import tracemalloc

    from dispenser.privacy import memscan

    patterns = np.random.default_rng(13).standard_normal((4, 128)).astype(np.float32)
    flat = patterns.view(np.uint8).reshape(4, -1)
    finder = memscan._Finder(flat)
    chunk = bytearray(memscan._CHUNK + 511)
    chunk[1001:1513] = memoryview(flat[2])
    hits = [0] * 4
    finder.count(chunk, len(chunk), 0, hits)  # compiles the kernel
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        finder.count(chunk, len(chunk), 0, hits)
        allocated = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert hits == [0, 0, 2, 0]
    assert allocated < 4096  # a few small Python objects, never a buffer
    chunk[:] = bytes(len(chunk))


def test_thousands_of_patterns_sharing_anchor_buckets_are_each_counted() -> None:
    """The audit scans for 2,000+ templates at once: patterns whose anchors share their low
    16 bits (the lookup bucket) are told apart by the whole anchor and the full compare."""
    from dispenser.privacy.memscan import _Finder

    patterns = np.random.default_rng(9).standard_normal((3000, 128)).astype(np.float32)
    flat = patterns.view(np.uint8).reshape(3000, -1)
    finder = _Finder(flat)
    _, bucket_of, sizes = np.unique(finder.anchor & 0xFFFF, return_inverse=True,
                                    return_counts=True)
    assert sizes.max() >= 2                     # some buckets hold several patterns
    shared = int(np.flatnonzero(bucket_of == sizes.argmax())[-1])
    region = bytearray(64 * 1024)
    placed = {0: 3, 1499: 1000, 2999: 20000, shared: 40001}
    for k, start in placed.items():
        region[start:start + 512] = flat[k].tobytes()
    hits = [0] * 3000
    finder.count(region, len(region), 0, hits)
    assert {k: hits[k] for k in placed} == dict.fromkeys(placed, 1)
    assert sum(hits) == len(placed)

"""Scan this process's own memory for byte patterns.

The audit's strongest evidence: after templates pass their retention limit, we
read every readable mapping of our own address space (`/proc/self/maps` +
`/proc/self/mem`) and search it for the exact bytes of each template that was ever
admitted, in every form it was stored. Zero hits means no copy survived anywhere Python,
numpy, numba or onnxruntime may have left one. A positive control (a template still live)
must be found, or the scan proves nothing.

Only counts and addresses-free summaries leave this module: the patterns themselves are
never printed or logged.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from dispenser.privacy.memory import own_memory_readable

_MAPS_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$")
# Kernel-provided mappings that cannot be read through /proc/self/mem or hold no user data.
_SKIP_NAMES = ("[vvar]", "[vsyscall]", "[vvar_vclock]")
# Read size: small enough that every pattern search over a chunk runs from the CPU cache.
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ScanResult:
    """What a scan covered and how many times each pattern was found (in input order)."""

    bytes_scanned: int
    regions_scanned: int
    regions_unreadable: int
    hits: tuple[int, ...]

    @property
    def total_hits(self) -> int:
        return sum(self.hits)


def _readable_regions(exclude: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    regions = []
    with open("/proc/self/maps", encoding="ascii") as maps:
        for line in maps:
            m = _MAPS_LINE.match(line)
            perms, name = m.group(3) if m else "", m.group(4).strip() if m else ""
            if not m or perms[0] != "r" or name in _SKIP_NAMES:
                continue
            if name.startswith("/") and perms[1] != "w":
                # A read-only file mapping (library code and constants) holds the file's
                # bytes; data can only get there by being written to that file, which the
                # no-disk-writes guard and the read-only system forbid.
                continue
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            if any(start < ex_end and ex_start < end for ex_start, ex_end in exclude):
                regions.extend(_subtract((start, end), exclude))
            else:
                regions.append((start, end))
    return _coalesce(regions)


def _coalesce(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join regions that touch. The kernel splits one allocation into several mappings
    (mlock and mprotect work on whole pages), so a template allocated across such a page
    boundary lies in two mappings: scanned one by one, neither holds all of it."""
    joined: list[tuple[int, int]] = []
    for start, end in sorted(regions):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
        else:
            joined.append((start, end))
    return joined


def _subtract(region: tuple[int, int], exclude: Sequence[tuple[int, int]]
              ) -> list[tuple[int, int]]:
    pieces = [region]
    for ex_start, ex_end in exclude:
        nxt = []
        for start, end in pieces:
            if ex_end <= start or end <= ex_start:
                nxt.append((start, end))
                continue
            if start < ex_start:
                nxt.append((start, ex_start))
            if ex_end < end:
                nxt.append((ex_end, end))
        pieces = nxt
    return pieces


def scan_own_memory(reference: np.ndarray) -> ScanResult:
    """Count occurrences of each row of `reference` (k rows, any dtype) in our own memory.

    The reference array itself is excluded from the scan, and the scan copies memory only
    into its one read buffer, which is excluded too: no copy of a pattern that it could
    then find again is made, so a live pattern counts exactly once. Patterns that straddle
    a chunk boundary are found (chunks overlap by the pattern length), and so are patterns
    that straddle the boundary of two adjacent mappings (touching regions are joined).
    """
    if reference.ndim == 0 or reference.shape[0] == 0 or reference.nbytes == 0:
        raise ValueError("scan_own_memory needs at least one non-empty pattern")
    if not reference.flags.c_contiguous:
        raise ValueError("scan_own_memory needs a C-contiguous reference (a copy would be "
                         "found as a hit)")
    flat = reference.view(np.uint8).reshape(reference.shape[0], -1)
    if flat.shape[1] < 4:
        raise ValueError("scan_own_memory needs patterns of at least 4 bytes")
    finder = _Finder(flat)
    keep = flat.shape[1] - 1  # bytes carried over between chunks
    # One reusable read buffer, excluded from the scan like the reference itself.
    buf = bytearray(_CHUNK + keep)
    buf_addr = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    exclude = [(flat.ctypes.data, flat.ctypes.data + flat.nbytes),
               (buf_addr, buf_addr + len(buf))]
    hits = [0] * flat.shape[0]
    scanned = regions_ok = unreadable = 0
    with own_memory_readable(), open("/proc/self/mem", "rb", buffering=0) as mem:
        for start, end in _readable_regions(exclude):
            read = _scan_region(mem, start, end, buf, finder, hits)
            scanned += max(read, 0)
            regions_ok += read >= 0
            unreadable += read < 0
    return ScanResult(scanned, regions_ok, unreadable, tuple(hits))


def _scan_region(mem: io.RawIOBase | io.BufferedIOBase, start: int, end: int,
                 buf: bytearray, finder: _Finder, hits: list[int]) -> int:
    """Count pattern hits in mem[start:end], chunk by chunk with an overlap of one pattern
    length minus one byte; return the bytes read, or -1 if none of it could be read.

    Other threads keep running during a scan, so a mapping can shrink or change under us: a
    short read is completed, and a chunk that cannot be read is skipped (the overlap is
    dropped) rather than abandoning the rest of the region.
    """
    keep = len(buf) - _CHUNK
    view = memoryview(buf)
    carried = read = 0
    failed = False
    for offset in range(start, end, _CHUNK):
        want, got = min(_CHUNK, end - offset), 0
        try:
            mem.seek(offset)
            while got < want:
                n = mem.readinto(view[carried + got:carried + want])
                if not n:
                    break
                got += n
        except (OSError, ValueError, OverflowError):
            failed = True
        if not got:
            carried = 0
            continue
        filled = carried + got
        finder.count(buf, filled, carried, hits)
        read += got
        carried = min(keep, filled)
        buf[:carried] = buf[filled - carried:filled]
    return read if read or not failed else -1


def _anchor_offset(row: np.ndarray) -> int:
    """Where in `row` to take the 4-byte anchor word: the first window with no zero byte,
    else the first whose two table bytes are non-zero (floats made from 8-bit pixels have
    zero low mantissa bytes), so the anchor never matches the zero pages of a process."""
    windows = range(row.shape[0] - 3)
    best = next((o for o in windows if row[o:o + 4].all()), None)
    if best is None:
        best = next((o for o in windows if row[o] and row[o + 1]), None)
    if best is None:
        raise ValueError("scan_own_memory: a pattern has no two adjacent non-zero bytes "
                         "(it would match every zero page)")
    return best


class _Finder:
    """Finds many equal-length patterns at any byte offset in one pass, without copying.

    Each pattern is recognised by one 4-byte word inside it (its "anchor", chosen so that
    the zero-filled pages that fill most of a process do not match: `_anchor_offset`). The
    patterns are grouped by the low 16 bits of their anchor (`order`, with `bucket[b]` ..
    `bucket[b + 1]` the group of value b); `_count_anchored` (numba) looks up every byte
    offset of the chunk in the 65,536 groups and compares in full only the few patterns of
    a non-empty group whose whole anchor matches, so the cost per byte does not grow with
    the number of patterns (the audit scans for 2,000 and more at once).

    The search must not copy the memory it reads: a copy of a chunk that holds a pattern,
    freed but not overwritten, is found again later in the same scan (numpy's ufuncs copy
    unaligned input into a scratch buffer, and a word view at byte offsets 1-3 is
    unaligned). The kernel reads the chunk in place and allocates nothing.
    """

    def __init__(self, flat: np.ndarray) -> None:
        self.patterns = flat
        n = flat.shape[0]
        self.anchor_at = np.empty(n, dtype=np.int64)
        self.anchor = np.empty(n, dtype=np.uint32)
        for k in range(n):
            at = _anchor_offset(flat[k])
            self.anchor_at[k] = at
            self.anchor[k] = int.from_bytes(bytes(flat[k][at:at + 4]), "little")
        low = (self.anchor & 0xFFFF).astype(np.int64)
        self.order = np.argsort(low, kind="stable").astype(np.int64)
        self.bucket = np.zeros((1 << 16) + 1, dtype=np.int64)
        np.cumsum(np.bincount(low, minlength=1 << 16), out=self.bucket[1:])
        self.counts = np.zeros(n, dtype=np.int64)

    def count(self, buf: bytearray, filled: int, carried: int, hits: list[int]) -> None:
        """Add to `hits` every occurrence in buf[:filled] that ends past `carried`."""
        self.counts.fill(0)
        _count_anchored(np.frombuffer(buf, dtype=np.uint8), filled, carried, self.bucket,
                        self.order, self.anchor, self.anchor_at, self.patterns, self.counts)
        for k in np.flatnonzero(self.counts).tolist():
            hits[k] += int(self.counts[k])


@njit(cache=True, nogil=True)
def _count_anchored(buf: np.ndarray, filled: int, carried: int, bucket: np.ndarray,
                    order: np.ndarray, anchor: np.ndarray, anchor_at: np.ndarray,
                    patterns: np.ndarray, counts: np.ndarray) -> None:
    """counts[k] += occurrences of patterns[k] in buf[:filled] that end past `carried`."""
    length = patterns.shape[1]
    for p in range(filled - 3):
        low = np.uint32(buf[p]) | (np.uint32(buf[p + 1]) << np.uint32(8))
        first = bucket[low]
        last = bucket[low + 1]
        if first == last:
            continue
        word = low | (np.uint32(buf[p + 2]) << np.uint32(16)) | (
            np.uint32(buf[p + 3]) << np.uint32(24))
        for j in range(first, last):
            k = order[j]
            if anchor[k] != word:
                continue
            pos = p - anchor_at[k]
            end = pos + length
            if pos < 0 or end <= carried or end > filled:
                continue
            same = True
            for i in range(length):
                if buf[pos + i] != patterns[k, i]:
                    same = False
                    break
            if same:
                counts[k] += 1

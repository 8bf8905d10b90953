"""The store's numba kernels: every loop over the ring buffer lives here.

All kernels are `@njit(cache=True, nogil=True)` with one explicit signature: compiled when
this module is imported (once per machine: the cache survives restarts), never later, and
run without the GIL, so the camera and motor threads keep running while a search walks the
buffer. They never allocate: they read and write the store's
preallocated arrays in place, so no temporary copy of a template is ever made.

`fastmath` is limited to re-association and contraction (what lets the compiler vectorise
the dot products). `nnan`/`ninf` are *not* enabled: the search starts from -inf and the
probe check must see NaN.

Slot states are small integers in an int8 array (`FREE`, `RESERVED`, `LIVE`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from dispenser.store import transform

FREE = 0
RESERVED = 1
LIVE = 2

_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
# Every kernel names its one signature, so numba compiles it (or loads it from its cache)
# when this module is imported, and never again: a call with other types raises TypeError
# instead of compiling. `dispenser run` imports the store before its write guard goes on,
# so no kernel is ever compiled (or its cache written) under the guard.


@njit("float64(float32[::1])", cache=True, nogil=True, fastmath=_FASTMATH)
def squared_norm(vector: np.ndarray) -> float:
    """Sum of squares in float64; NaN or inf if any element is not finite."""
    acc = 0.0
    for j in range(vector.shape[0]):
        acc += np.float64(vector[j]) * np.float64(vector[j])
    return acc


@njit("void(float32[:, ::1], float32[::1], float32[:, ::1], float32[::1])", cache=True,
      nogil=True, fastmath=_FASTMATH)
def seal_row(signs: np.ndarray, probe: np.ndarray, scratch: np.ndarray,
             row: np.ndarray) -> None:
    """row = the probe sealed under one epoch key (`transform.seal_pair_into` with the key
    twice, the spare result in scratch[2]); `scratch` ((3, D)) is zeroised afterwards."""
    transform.seal_pair_into(signs, signs, probe, scratch[:2], row, scratch[2])
    for k in range(scratch.shape[0]):
        for j in range(scratch.shape[1]):
            scratch[k, j] = np.float32(0.0)


@njit("void(float32[:, :, ::1], int32[::1], float32[::1], float32[:, ::1], float32[:, ::1])",
      cache=True, nogil=True, fastmath=_FASTMATH)
def seal_probe_per_key(keys: np.ndarray, key_refs: np.ndarray, probe: np.ndarray,
                       rotated: np.ndarray, scratch: np.ndarray) -> None:
    """rotated[k] = the probe sealed under key k for every key slot in use (refs > 0), two
    keys at a time. `scratch` ((3, D)) holds the transform's other buffers and the spare
    result of an odd key out: a separate array, because scratch rows inside `rotated` make
    LLVM give up vectorising (it halves the speed)."""
    waiting = -1
    for k in range(keys.shape[0]):
        if key_refs[k] <= 0:
            continue
        if waiting < 0:
            waiting = k
        else:
            transform.seal_pair_into(keys[waiting], keys[k], probe, scratch[:2],
                                     rotated[waiting], rotated[k])
            waiting = -1
    if waiting >= 0:
        transform.seal_pair_into(keys[waiting], keys[waiting], probe, scratch[:2],
                                 rotated[waiting], scratch[2])


@njit("Tuple((float64, int64))(float32[:, ::1], int8[::1], float64[::1], int32[::1], "
      "float32[:, ::1], float64, float64)", cache=True, nogil=True, fastmath=_FASTMATH)
def best_live_similarity(rows: np.ndarray, state: np.ndarray, served: np.ndarray,
                         slot_key: np.ndarray, rotated: np.ndarray, now: float,
                         deny_window: float) -> tuple[float, int]:
    """(highest dot product between the probe and every LIVE row with age < deny_window,
    how many such rows there are): -inf and 0 when no row qualifies. The count is the live
    count the decision rule is derived for, taken in the same pass, so it is exactly the
    set of rows the probe was compared with.

    One pass: the mask is checked first and a row that does not qualify is not read at all
    (rows past the deny window and free slots cost no memory traffic; in ring order they
    come in runs, so the branch is predictable), then the dot product of row i with the
    probe sealed under row i's epoch key, then the running max.
    """
    best = np.float32(-np.inf)
    live = 0
    dim = rows.shape[1]
    for i in range(rows.shape[0]):
        if state[i] != LIVE or not now - served[i] < deny_window:
            continue
        live += 1
        k = slot_key[i]
        acc = np.float32(0.0)
        for j in range(dim):
            acc += rows[i, j] * rotated[k, j]
        best = max(best, acc)
    return float(best), live


@njit("Tuple((float64, int64))(float32[:, ::1], int8[::1], float64[::1], int32[::1], "
      "float32[:, :, ::1], int32[::1], float32[::1], float32[:, ::1], float32[:, ::1], "
      "float64, float64)", cache=True, nogil=True, fastmath=_FASTMATH)
def best_match(rows: np.ndarray, state: np.ndarray, served: np.ndarray,
               slot_key: np.ndarray, keys: np.ndarray, key_refs: np.ndarray,
               probe: np.ndarray, rotated: np.ndarray, scratch: np.ndarray, now: float,
               deny_window: float) -> tuple[float, int]:
    """What `decide` matches, in one call: seal the probe under every key in use into
    `rotated`, take `best_live_similarity` (best similarity, live count), and overwrite
    `rotated` and `scratch` with zeros before returning (one dispatch from Python instead
    of four)."""
    seal_probe_per_key(keys, key_refs, probe, rotated, scratch)
    best, live = best_live_similarity(rows, state, served, slot_key, rotated, now,
                                      deny_window)
    for k in range(rotated.shape[0]):
        for j in range(rotated.shape[1]):
            rotated[k, j] = np.float32(0.0)
    for k in range(scratch.shape[0]):
        for j in range(scratch.shape[1]):
            scratch[k, j] = np.float32(0.0)
    return best, live


@njit("void(int64, float32[:, ::1], int8[::1], float64[::1], float64[::1], int64[::1], "
      "int32[::1], int32[::1], int64[::1])", cache=True, nogil=True)
def clear_slot(i: int, rows: np.ndarray, state: np.ndarray, born: np.ndarray,
               served: np.ndarray, seq: np.ndarray, slot_key: np.ndarray,
               key_refs: np.ndarray, generation: np.ndarray) -> None:
    """Overwrite slot i with zeros (template bytes, both timestamps, order) and free it.

    The slot's generation is bumped so a `Reservation` naming the old occupant is stale."""
    k = slot_key[i]
    if state[i] != FREE and k >= 0:
        key_refs[k] -= 1
    for j in range(rows.shape[1]):
        rows[i, j] = 0.0
    born[i] = 0.0
    served[i] = 0.0
    seq[i] = 0
    slot_key[i] = -1
    state[i] = FREE
    generation[i] += 1


@njit("UniTuple(int64, 2)(float32[:, ::1], int8[::1], float64[::1], float64[::1], "
      "int64[::1], int32[::1], int32[::1], float64, float64, float64, int64[::1])",
      cache=True, nogil=True)
def sweep_due(rows: np.ndarray, state: np.ndarray, born: np.ndarray, served: np.ndarray,
              seq: np.ndarray, slot_key: np.ndarray, key_refs: np.ndarray, now: float,
              retention: float, reservation_timeout: float,
              generation: np.ndarray) -> tuple[int, int]:
    """Zeroise every slot whose age reached `retention`, and every reservation older than
    `reservation_timeout`. Returns (deleted at retention, reservations timed out)."""
    deleted = 0
    timed_out = 0
    for i in range(rows.shape[0]):
        if state[i] == FREE:
            continue
        age = now - born[i]
        if age >= retention:
            deleted += 1
        elif state[i] == RESERVED and age >= reservation_timeout:
            timed_out += 1
        else:
            continue
        clear_slot(i, rows, state, born, served, seq, slot_key, key_refs, generation)
    return deleted, timed_out


@njit("Tuple((int64, boolean))(int8[::1], int64[::1], int64)", cache=True, nogil=True)
def pick_slot(state: np.ndarray, seq: np.ndarray, start: int) -> tuple[int, bool]:
    """The first FREE slot at or after `start` in ring order, else the oldest occupied slot.

    Returns (slot, must_evict). "Oldest" is the smallest admission sequence number, which is
    also the oldest admission time because the clock never goes backwards.
    """
    n = state.shape[0]
    oldest = -1
    for step in range(n):
        i = (start + step) % n
        if state[i] == FREE:
            return i, False
        if oldest < 0 or seq[i] < seq[oldest]:
            oldest = i
    return oldest, True


@njit("float64(float32[:, ::1])", cache=True, nogil=True, fastmath=_FASTMATH)
def stream_sum(rows: np.ndarray) -> float:
    """Sum of every element: the cost of reading the buffer once (benchmark lower bound)."""
    acc = np.float32(0.0)
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            acc += rows[i, j]
    return float(acc)

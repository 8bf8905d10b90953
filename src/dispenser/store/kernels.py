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


@njit("void(float32[:, ::1], float32[::1], float32[::1])", cache=True, nogil=True,
      fastmath=_FASTMATH)
def rotate_into(key: np.ndarray, vector: np.ndarray, out: np.ndarray) -> None:
    """out = key @ vector (one d x d rotation; `out` must not alias `vector`)."""
    dim = vector.shape[0]
    for i in range(dim):
        acc = np.float32(0.0)
        for j in range(dim):
            acc += key[i, j] * vector[j]
        out[i] = acc


@njit("void(float32[:, :, ::1], int32[::1], float32[::1], float32[:, ::1])", cache=True,
      nogil=True)
def rotate_probe(keys: np.ndarray, key_refs: np.ndarray, probe: np.ndarray,
                 rotated: np.ndarray) -> None:
    """rotated[k] = keys[k] @ probe for every key slot in use (refs > 0); others untouched."""
    for k in range(keys.shape[0]):
        if key_refs[k] > 0:
            rotate_into(keys[k], probe, rotated[k])


@njit("float64(float32[:, ::1], int8[::1], float64[::1], int32[::1], float32[:, ::1], "
      "float64, float64)", cache=True, nogil=True, fastmath=_FASTMATH)
def best_live_similarity(rows: np.ndarray, state: np.ndarray, served: np.ndarray,
                         slot_key: np.ndarray, rotated: np.ndarray, now: float,
                         deny_window: float) -> float:
    """Highest dot product between the probe and every LIVE row with age < deny_window.

    Fused: the dot product (row i against the probe rotated by row i's epoch key), the mask
    and the running max happen in one pass; -inf when no row qualifies. The mask is applied
    as a select after the dot product rather than as a branch around it: the loop then has
    no data-dependent branch and streams the buffer about 1.3x slower than a plain sum
    instead of 1.7x (bench/test_bench_store.py). Masked-out rows (free: all zeros, key -1
    read as key 0) contribute nothing.
    """
    best = np.float32(-np.inf)
    excluded = np.float32(-np.inf)
    dim = rows.shape[1]
    for i in range(rows.shape[0]):
        k = max(slot_key[i], 0)
        acc = np.float32(0.0)
        for j in range(dim):
            acc += rows[i, j] * rotated[k, j]
        qualifies = (state[i] == LIVE) & (now - served[i] < deny_window)
        best = max(best, acc if qualifies else excluded)
    return float(best)


@njit("int64(int8[::1], float64[::1], float64, float64)", cache=True, nogil=True)
def live_in_window(state: np.ndarray, served: np.ndarray, now: float,
                   deny_window: float) -> int:
    """How many LIVE rows have age < deny_window: exactly the rows `best_live_similarity`
    compares a probe with, i.e. the live count the decision rule is derived for."""
    count = 0
    for i in range(state.shape[0]):
        if state[i] == LIVE and now - served[i] < deny_window:
            count += 1
    return count


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


@njit("void(float64[:, ::1])", cache=True, nogil=True)
def orthonormalise_rows(matrix: np.ndarray) -> None:
    """Modified Gram-Schmidt on the rows of a square float64 matrix, in place, run twice
    ("twice is enough") so the result is orthogonal to machine precision. On a Gaussian
    matrix this yields a uniformly random (Haar) orthogonal matrix."""
    n = matrix.shape[0]
    for _ in range(2):
        for i in range(n):
            for p in range(i):
                dot = 0.0
                for j in range(n):
                    dot += matrix[i, j] * matrix[p, j]
                for j in range(n):
                    matrix[i, j] -= dot * matrix[p, j]
            norm = 0.0
            for j in range(n):
                norm += matrix[i, j] * matrix[i, j]
            norm = np.sqrt(norm)
            for j in range(n):
                matrix[i, j] /= norm


@njit("void(float64[:, ::1], float32[:, ::1])", cache=True, nogil=True)
def copy_into(src: np.ndarray, dst: np.ndarray) -> None:
    """dst[...] = src for 2-D arrays, casting element by element: unlike a numpy cast
    assignment, no intermediate buffer (which would keep a copy of a key) is involved."""
    for i in range(src.shape[0]):
        for j in range(src.shape[1]):
            dst[i, j] = src[i, j]


@njit("float64(float32[:, ::1])", cache=True, nogil=True, fastmath=_FASTMATH)
def stream_sum(rows: np.ndarray) -> float:
    """Sum of every element: the cost of reading the buffer once (benchmark lower bound)."""
    acc = np.float32(0.0)
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            acc += rows[i, j]
    return float(acc)

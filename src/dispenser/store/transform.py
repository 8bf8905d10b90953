"""The structured orthogonal transform that seals a template under an epoch key.

An epoch key is `ROUNDS + 1` secret vectors of random signs (+1/-1), `s_0 ... s_R`. With
`H` the Walsh-Hadamard matrix of order `D` (Sylvester's construction, entries +1/-1) and
`E` the zero padding of a `d`-vector to `D = padded_dim(d)` coordinates, a template `x` is
stored as

    Q x = D^(-R/2) * diag(s_R) H diag(s_{R-1}) H ... diag(s_1) H diag(s_0) E x

Each factor is orthogonal once scaled (`H / sqrt(D)` and a sign flip are), so `Q` is an
isometry from R^d into R^D: it preserves every dot product and norm, and matching a probe
sealed with the same key gives the similarity of the two templates (to float32 rounding).
Three sign-and-Hadamard rounds are the structured "pseudo-random rotation" of FALCONN /
orthogonal random features (Andoni et al. 2015, Yu et al. 2016); the last sign vector
hides the (public) last Hadamard. docs/privacy.md says what this does and does not hide.

Why this shape: a dense random `d x d` rotation costs `d^2` multiply-adds per key (16,384
at d = 128), and `decide` rotates the probe with every live key; the fast Walsh-Hadamard
transform costs `D log2 D` additions (896 at d = 128), so the key rotation is no longer
the fixed cost of a search. A product of a few Householder reflections would be cheaper
still but is not a protection: it leaves every template component orthogonal to its few
reflection vectors unchanged, i.e. almost the whole template in the clear.

Like the store's kernels (dispenser.store.kernels), the kernel called from Python carries
one explicit signature, so it is compiled when this module is imported and never later;
the `inline="always"` helpers are compiled into the kernels that call them (each inlined
copy costs compile time on a cold numba cache: docs/performance.md, "Store"). The
butterfly kernel indexes with unsigned integers: numba adds a negative-index check to
every signed index it cannot prove non-negative, and that check keeps LLVM from
vectorising the loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ROUNDS = 3
# Smallest padded dimension (a Hadamard matrix of order 1 would mix nothing).
_MIN_PADDED = 2
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_U1 = np.uint64(1)
_U2 = np.uint64(2)


def padded_dim(dim: int) -> int:
    """The transform's dimension for `dim`-dimensional templates: the next power of two
    (at least 2). Stored rows have this many float32 values."""
    return max(_MIN_PADDED, 1 << (max(dim, 1) - 1).bit_length())


def scale(padded: int, rounds: int = ROUNDS) -> float:
    """The factor that makes `rounds` unnormalised Hadamard products orthogonal."""
    return float(padded ** (-rounds / 2.0))


@njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
def _butterfly_stages(src_a: np.ndarray, dst_a: np.ndarray, src_b: np.ndarray,
                      dst_b: np.ndarray) -> None:
    """One constant-geometry Hadamard stage on two vectors at once: dst[i] = src[2i] +
    src[2i+1] and dst[i + n/2] = src[2i] - src[2i+1]. log2(n) of them, alternating between
    two buffers, give H src. Every stage is the same single long loop, which LLVM
    vectorises (the textbook in-place stages have short inner loops at small strides that
    it does not), and two independent vectors per loop keep the core busier than one: two
    keys are sealed in about 0.7 times the time of two one after the other.
    """
    half = np.uint64(src_a.shape[0]) // _U2
    for i in range(half):
        a0 = src_a[i + i]
        a1 = src_a[i + i + _U1]
        b0 = src_b[i + i]
        b1 = src_b[i + i + _U1]
        dst_a[i] = a0 + a1
        dst_a[i + half] = a0 - a1
        dst_b[i] = b0 + b1
        dst_b[i + half] = b0 - b1


@njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
def _hadamard_then_signs(v_a: np.ndarray, scratch_a: np.ndarray, sign_a: np.ndarray,
                         v_b: np.ndarray, scratch_b: np.ndarray, sign_b: np.ndarray,
                         factor: np.float32) -> None:
    """v = factor * diag(sign) H v for two vectors, each with its own scratch buffer."""
    n = v_a.shape[0]
    in_v = True
    width = 1
    while width < n:
        if in_v:
            _butterfly_stages(v_a, scratch_a, v_b, scratch_b)
        else:
            _butterfly_stages(scratch_a, v_a, scratch_b, v_b)
        in_v = not in_v
        width *= 2
    if in_v:
        for i in range(n):
            v_a[i] *= sign_a[i] * factor
            v_b[i] *= sign_b[i] * factor
    else:
        for i in range(n):
            v_a[i] = scratch_a[i] * sign_a[i] * factor
            v_b[i] = scratch_b[i] * sign_b[i] * factor


@njit(cache=True, nogil=True, fastmath=_FASTMATH, inline="always")
def seal_pair_into(signs_a: np.ndarray, signs_b: np.ndarray, vector: np.ndarray,
                   scratch: np.ndarray, out_a: np.ndarray, out_b: np.ndarray) -> None:
    """out_a = Q_a vector and out_b = Q_b vector for the keys `signs_a` and `signs_b`
    ((ROUNDS + 1, D) each; pass one key twice, and a spare `out_b`, to seal with one).
    `vector` has d <= D values, `out_a` and `out_b` have D, `scratch` is (2, D) and is
    left holding intermediate values: the caller zeroises it. No two may alias."""
    dim = vector.shape[0]
    padded = out_a.shape[0]
    first_a = signs_a[0]
    first_b = signs_b[0]
    for i in range(dim):
        out_a[i] = first_a[i] * vector[i]
        out_b[i] = first_b[i] * vector[i]
    for i in range(dim, padded):
        out_a[i] = np.float32(0.0)
        out_b[i] = np.float32(0.0)
    rounds = signs_a.shape[0] - 1
    factor = np.float32(np.float64(padded) ** (-rounds / 2.0))
    for r in range(1, rounds + 1):
        _hadamard_then_signs(out_a, scratch[0], signs_a[r], out_b, scratch[1], signs_b[r],
                             factor if r == rounds else np.float32(1.0))


@njit("void(float64[:, ::1], float32[:, ::1])", cache=True, nogil=True)
def signs_from_uniforms(uniforms: np.ndarray, out: np.ndarray) -> None:
    """out[r, i] = +1 where uniforms[r, i] < 0.5, else -1 (element by element, so no
    intermediate array holds the key)."""
    for r in range(out.shape[0]):
        for i in range(out.shape[1]):
            out[r, i] = np.float32(1.0) if uniforms[r, i] < 0.5 else np.float32(-1.0)


def fwht_numpy(vectors: np.ndarray) -> np.ndarray:
    """H applied to the last axis, written as plain numpy (the independent reference the
    benchmarks and tests compare the numba kernel with)."""
    padded = vectors.shape[-1]
    lead = vectors.shape[:-1]
    out = vectors.astype(np.float64)
    h = 1
    while h < padded:
        blocks = out.reshape(*lead, padded // (2 * h), 2, h)
        out = np.stack([blocks[..., 0, :] + blocks[..., 1, :],
                        blocks[..., 0, :] - blocks[..., 1, :]], axis=-2).reshape(*lead, padded)
        h *= 2
    return out


def seal_numpy(signs: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Q applied to each row of `vectors` ((n, d) or (d,)) in float64, with plain numpy."""
    padded = signs.shape[1]
    rounds = signs.shape[0] - 1
    x = np.zeros((*vectors.shape[:-1], padded))
    x[..., :vectors.shape[-1]] = vectors
    x *= signs[0]
    for r in range(1, rounds + 1):
        x = fwht_numpy(x) * signs[r]
    return x * scale(padded, rounds)


def unseal_numpy(signs: np.ndarray, rows: np.ndarray, dim: int) -> np.ndarray:
    """Q^T applied to each sealed row ((n, D) or (D,)): the `dim`-dimensional templates
    back, in float64 (tests and audits; the store never needs it)."""
    rounds = signs.shape[0] - 1
    x = rows.astype(np.float64) * signs[rounds] * scale(signs.shape[1], rounds)
    for r in range(rounds - 1, -1, -1):
        x = fwht_numpy(x) * signs[r]
    templates: np.ndarray = x[..., :dim]
    return templates

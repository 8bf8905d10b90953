"""Store measurements for `dispenser bench` and bench/test_bench_store.py.

The search is measured as the store runs it (`kernels.best_match`: seal the probe under
every live epoch key, the fused masked max, zeroise the scratch) against, in the same run
and on the same arrays:

- `numpy_decide`: a clean vectorised numpy version of the same masked search (each key
  as a dense matrix, built once with `transform.seal_numpy`);
- faiss `IndexFlatIP` search over the same rows (no mask, no key), when faiss is
  installed (it is a test extra, not a runtime dependency), limited to one thread like
  our kernel. faiss pays no key rotation, so the search alone is reported next to it too;
- `stream_sum`: reading the row buffer once, the bound no search can beat.

The search arrays are built directly (not through `TemplateStore.decide`), because
admitting a million entries one by one would cost O(N^2); admit, sweep and memory are
measured through the real store.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from numba import njit

from dispenser import perf
from dispenser.clock import VirtualClock
from dispenser.config import StoreSettings
from dispenser.store import kernels, transform
from dispenser.store.keys import EpochKeys
from dispenser.store.rule import MatchRule
from dispenser.store.store import TemplateStore

DIM = 128
DEFAULT_SIZES = (16, 256, 1024, 4096, 65536)
QUICK_SIZES = (16, 1024)
# Entries spread over 600 s of admissions under 60 s epochs: about ten live keys.
EPOCHS = 10
DENY_WINDOW_S = 540.0
RETENTION_S = 600.0
# Each contender's batch of calls per turn in `interleaved_per_call`.
_BATCH_S = 1e-3


@dataclass
class SearchCase:
    """N live rows admitted over the retention period under `EPOCHS` keys, and a probe."""

    rows: np.ndarray
    state: np.ndarray
    served: np.ndarray
    slot_key: np.ndarray
    keys: np.ndarray
    key_refs: np.ndarray
    rotated: np.ndarray
    scratch: np.ndarray
    probe: np.ndarray
    now: float
    key_matrices: np.ndarray  # each key as a dense (padded_dim, dim) matrix, for numpy

    @property
    def row_bytes(self) -> int:
        return int(self.rows.nbytes)


def unit_rows(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    """n random L2-normalised float32 templates."""
    rows = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def search_case(n: int, dim: int = DIM, seed: int = 0) -> SearchCase:
    """A ring of n live rows, admitted uniformly over the last `RETENTION_S` seconds (so
    about 10% are past the deny window), under real epoch keys."""
    keys = EpochKeys(dim, EPOCHS, key_epoch_s=RETENTION_S / EPOCHS)
    for epoch in range(EPOCHS):
        keys.current(epoch * keys.key_epoch_s)
    now = RETENTION_S
    admitted = np.linspace(now - RETENTION_S + 1e-3, now, n)
    slot_key = np.minimum((admitted // keys.key_epoch_s).astype(np.int32), EPOCHS - 1)
    keys.refs[:] = np.bincount(slot_key, minlength=EPOCHS)
    rows = np.zeros((n, keys.padded_dim), np.float32)
    _seal_rows(keys.keys, slot_key, unit_rows(n, dim, seed), rows)
    key_matrices = np.stack([transform.seal_numpy(key, np.eye(dim)).T
                             for key in keys.keys.astype(np.float64)]).astype(np.float32)
    probe = unit_rows(1, dim, seed + 1)[0]
    return SearchCase(rows=rows, state=np.full(n, kernels.LIVE, dtype=np.int8),
                      served=admitted, slot_key=slot_key, keys=keys.keys,
                      key_refs=keys.refs.copy(),
                      rotated=np.zeros((EPOCHS, keys.padded_dim), dtype=np.float32),
                      scratch=np.zeros((3, keys.padded_dim), dtype=np.float32),
                      probe=probe, now=now, key_matrices=key_matrices)


@njit("void(float32[:, :, ::1], int32[::1], float32[:, ::1], float32[:, ::1])", cache=True,
      nogil=True)
def _seal_rows(keys: np.ndarray, slot_key: np.ndarray, faces: np.ndarray,
               rows: np.ndarray) -> None:
    """rows[i] = faces[i] sealed under its epoch key (building a case; the store seals one
    row per admission)."""
    scratch = np.zeros((3, rows.shape[1]), np.float32)
    for i in range(faces.shape[0]):
        kernels.seal_row(keys[slot_key[i]], faces[i], scratch, rows[i])


def numba_decide(case: SearchCase) -> float:
    """What `TemplateStore.decide` computes: seal with live keys, fused masked max."""
    best, _ = kernels.best_match(case.rows, case.state, case.served, case.slot_key,
                                 case.keys, case.key_refs, case.probe, case.rotated,
                                 case.scratch, case.now, DENY_WINDOW_S)
    return best


def numpy_decide(case: SearchCase) -> float:
    """The same masked search, written as clean vectorised numpy."""
    rotated = case.key_matrices @ case.probe
    ok = (case.state == kernels.LIVE) & (case.now - case.served < DENY_WINDOW_S)
    best = -math.inf
    for k in np.unique(case.slot_key[ok]):
        sims = case.rows[ok & (case.slot_key == k)] @ rotated[k]
        best = max(best, float(sims.max()))
    return best


def stream_once(case: SearchCase) -> float:
    """Read the row buffer once: the lower bound for any full search."""
    return kernels.stream_sum(case.rows)


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def faiss_index(case: SearchCase) -> Any:
    """A one-thread faiss IndexFlatIP over the case's rows."""
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader chatters at INFO
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.IndexFlatIP(case.rows.shape[1])
    index.add(case.rows)
    return index


def faiss_search(index: Any, case: SearchCase) -> float:
    """Best inner product over all rows (no mask, no key)."""
    distances, _ = index.search(case.probe.reshape(1, -1), 1)
    return float(distances[0, 0])


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator > 0 else "n/a"


def seal_probe(case: SearchCase) -> None:
    """Leave the probe sealed under every live key in the case's scratch (`search_only`
    then measures the search alone)."""
    kernels.seal_probe_per_key(case.keys, case.key_refs, case.probe, case.rotated,
                               case.scratch)


def search_only(case: SearchCase) -> float:
    """The fused masked search alone, with the probe already sealed (`seal_probe`)."""
    best, _ = kernels.best_live_similarity(case.rows, case.state, case.served,
                                           case.slot_key, case.rotated, case.now,
                                           DENY_WINDOW_S)
    return best


def interleaved_per_call(contenders: dict[str, Callable[[], object]],
                         options: perf.Options) -> dict[str, tuple[float, int]]:
    """Median seconds per call of each contender, and the number of rounds, the contenders
    taking turns: one batch of calls each (sized to about a millisecond), then the next,
    for `options.min_time_s` per contender (at least 7 rounds).

    Why turns: on a shared machine the load changes from one second to the next, and a
    ratio of two times measured one after the other mostly measures that change; taking
    turns exposes every contender to the same load.
    """
    batch: dict[str, int] = {}
    for name, run in contenders.items():
        run()  # warm up: first calls allocate and fill caches
        start = time.perf_counter()
        run()
        batch[name] = max(1, int(_BATCH_S / max(time.perf_counter() - start, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    deadline = time.perf_counter() + options.min_time_s * len(contenders)
    rounds = 0
    while rounds < 7 or (time.perf_counter() < deadline and rounds < options.max_rounds):
        for name, run in contenders.items():
            calls = batch[name]
            start = time.perf_counter()
            for _ in range(calls):
                run()
            samples[name].append((time.perf_counter() - start) / calls)
        rounds += 1
    return {name: (statistics.median(times), rounds) for name, times in samples.items()}


@perf.measurement("store.decide", "masked search: numba vs faiss vs streaming once "
                                  "(taking turns), and vs numpy")
def _decide(options: perf.Options) -> list[perf.Result]:
    sizes = options.sizes or (QUICK_SIZES if options.quick else DEFAULT_SIZES)
    results: list[perf.Result] = []
    for n in sizes:
        case = search_case(n)
        if abs(numba_decide(case) - numpy_decide(case)) > 1e-4:
            raise RuntimeError("store.decide: numba and numpy references disagree")
        sealed = replace(case, rotated=np.zeros_like(case.rotated),
                         scratch=np.zeros_like(case.scratch))
        seal_probe(sealed)  # `search_only` reads it; `numba_decide` zeroises its own
        contenders: dict[str, Callable[[], object]] = {
            "decide": partial(numba_decide, case), "search": partial(search_only, sealed),
            "stream": partial(stream_once, case)}
        index = faiss_index(case) if faiss_available() else None
        if index is not None:
            contenders["faiss"] = partial(faiss_search, index, case)
        per_call = interleaved_per_call(contenders, options)
        del contenders, index, sealed  # bound memory: the next size is built next
        # numpy, 10-300x slower and allocating copies of the rows, is timed on its own:
        # among the turns it would only disturb the others.
        ref, _ = perf.time_call(partial(numpy_decide, case), options)
        ours, rounds = per_call["decide"]
        search, search_rounds = per_call["search"]
        stream = per_call["stream"][0]
        anchor = per_call["faiss"][0] if "faiss" in per_call else None
        notes = [f"decide/stream {_ratio(ours, stream)}"]
        if anchor is not None:
            notes.append(f"decide/faiss {_ratio(ours, anchor)}")
        notes.append(f"numpy reference {_ratio(ref, ours)}x slower")
        results.append(perf.Result(f"store.decide N={n}", ours, rounds, ", ".join(notes)))
        notes = [f"search/stream {_ratio(search, stream)}"]
        if anchor is not None:
            notes.append(f"search/faiss {_ratio(search, anchor)}")
        results.append(perf.Result(f"  search only (probe sealed) N={n}", search,
                                   search_rounds, ", ".join(notes)))
        del case
    return results


def filled_store(capacity: int, clock: VirtualClock) -> tuple[TemplateStore, np.ndarray]:
    """A store whose every slot holds a live entry admitted now, and 2 x capacity faces
    (the first `capacity` are the stored ones), filled with `TemplateStore.preload`
    because admitting N faces through `decide` costs O(N^2)."""
    store = TemplateStore(StoreSettings(capacity=capacity), rule=MatchRule.fixed(0.93), dim=DIM,
                          clock=clock, start_sweeper=False, zeroise_on_signals=False)
    faces = unit_rows(2 * capacity, seed=3)
    store.preload(faces[:capacity])
    return store, faces


def admit_one(store: TemplateStore, faces: np.ndarray, turn: list[int]) -> None:
    """decide + commit of the next face, which the store does not hold (it evicts one)."""
    face = faces[turn[0] % len(faces)]
    turn[0] += 1
    decision = store.decide(face.copy())
    if decision.reservation is None:
        raise RuntimeError("store.admit: a new face was denied")
    store.commit(decision.reservation)


@perf.measurement("store.admit", "decide + commit of a new face into a full store (evicts)")
def _admit(options: perf.Options) -> list[perf.Result]:
    capacity = 1024
    store, faces = filled_store(capacity, VirtualClock(1000.0))
    result = perf.timed(f"store.admit capacity={capacity}",
                        partial(admit_one, store, faces, [capacity]), options,
                        note="full store: each admit evicts the oldest")
    store.close()
    return [result]


@perf.measurement("store.sweep", "periodic sweep: nothing due, and everything due")
def _sweep(options: perf.Options) -> list[perf.Result]:
    results = []
    for capacity in (1024,) if options.quick else (1024, 65536):
        clock = VirtualClock(1000.0)
        store, _ = filled_store(capacity, clock)
        results.append(perf.timed(f"store.sweep capacity={capacity} nothing due",
                                  store.sweep, options))
        clock.advance(RETENTION_S)
        seconds, _ = _once(store.sweep)
        results.append(perf.Result(f"store.sweep capacity={capacity} all due", seconds, 1,
                                   note=f"zeroises {capacity} entries"))
        store.close()
    return results


def _once(fn: Any) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


_JIT_PROBE = """
import time
start = time.perf_counter()
import numpy as np
from dispenser.store import kernels, transform
rows = np.zeros((4, 128), np.float32); rotated = np.zeros((2, 128), np.float32)
scratch = np.zeros((3, 128), np.float32)
keys = np.zeros((2, 4, 128), np.float32); refs = np.ones(2, np.int32)
state = np.zeros(4, np.int8); t = np.zeros(4); seq = np.zeros(4, np.int64)
slot_key = np.zeros(4, np.int32); gen = np.zeros(4, np.int64); probe = np.zeros(128, np.float32)
kernels.squared_norm(probe)
kernels.best_match(rows, state, t, slot_key, keys, refs, probe, rotated, scratch, 0.0, 1.0)
kernels.seal_row(keys[0], probe, scratch, rows[0])
kernels.sweep_due(rows, state, t, t, seq, slot_key, refs, 0.0, 1.0, 1.0, gen)
kernels.pick_slot(state, seq, 0)
kernels.clear_slot(0, rows, state, t, t, seq, slot_key, refs, gen)
transform.signs_from_uniforms(np.zeros((4, 128)), keys[0])
print(time.perf_counter() - start)
"""


def first_call_seconds(cache_dir: str) -> float:
    """Import the kernels and call each once in a fresh process using `cache_dir`."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _JIT_PROBE], env=env, capture_output=True,
                         text=True, check=True, timeout=600)
    return float(out.stdout.strip().splitlines()[-1])


@perf.measurement("store.jit", "first call of every kernel: compile vs load from cache")
def _jit(options: perf.Options) -> list[perf.Result]:
    with tempfile.TemporaryDirectory(prefix="dispenser-numba-") as cache_dir:
        compile_s = first_call_seconds(cache_dir)  # empty cache: what no cache=True costs
        cached_s = first_call_seconds(cache_dir)  # the cache written by the first run
    return [perf.Result("store.jit first call, compiling (no cache)", compile_s, 1),
            perf.Result("store.jit first call, cache=True warm", cached_s, 1,
                        note=f"{_ratio(compile_s, cached_s)}x faster than compiling")]


def store_footprint(capacity: int, dim: int = DIM) -> int:
    """Bytes the store allocates (tracemalloc) for `capacity` slots."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = TemplateStore(StoreSettings(capacity=capacity), rule=MatchRule.fixed(0.93), dim=dim,
                              clock=VirtualClock(0.0), start_sweeper=False,
                              zeroise_on_signals=False)
        used = tracemalloc.get_traced_memory()[0] - before
        store.close()
    finally:
        tracemalloc.stop()
    return int(used)


def slot_bytes(dim: int = DIM) -> int:
    """Bytes per slot: the template row plus state, two timestamps, order, key, generation."""
    return dim * 4 + 1 + 8 + 8 + 8 + 4 + 8


@perf.measurement("store.memory", "allocated bytes = capacity x slot size + constant")
def _memory(options: perf.Options) -> list[perf.Result]:
    results = []
    for capacity in (1024,) if options.quick else (1024, 65536, 1_048_576):
        used = store_footprint(capacity)
        expected = capacity * slot_bytes()
        results.append(perf.Result(
            f"store.memory capacity={capacity}", used, 1, unit="B",
            note=f"capacity x {slot_bytes()} B = {expected} B, "
                 f"constant {used - expected} B (keys, scratch)"))
    return results

"""Store benchmarks (pytest-benchmark): `pytest bench/test_bench_store.py --benchmark-only`.

decide at N = 16 ... 1,048,576 live entries (d = 128), each group measuring in the same run:
`numba` (what decide runs: `kernels.best_match`, i.e. seal the probe under every live epoch
key, the masked max, zeroise the scratch), `numba-search` (the masked max alone),
`numpy` (the clean vectorised reference of the same masked search), `faiss` (IndexFlatIP,
one thread, no mask, no key: the speed anchor) and `stream` (reading the rows once: the
bound). The ratios decide/faiss, search/faiss and decide/stream are printed at the end.
Targets (reported, not asserted, see docs/performance.md): decide/faiss <= 1.0 at every N,
decide/stream <= 1.5 at N = 1,048,576. Also: admit, sweep, first-call JIT with and without
the cache, memory.

The 1,048,576 case holds 512 MiB of rows plus a faiss copy; only one size is alive at a time.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from dispenser import perf
from dispenser.clock import VirtualClock
from dispenser.store import bench as sb

SIZES = (16, 256, 1024, 4096, 65536, 1_048_576)
IMPLS = ("numba", "numba-search", "numpy", "faiss", "stream")

_medians: dict[tuple[int, str], float] = {}
_interleaved: dict[int, dict[str, float]] = {}
_cases: dict[int, tuple[sb.SearchCase, Any]] = {}


def _case(n: int) -> tuple[sb.SearchCase, Any]:
    """The case for size n (built once; the previous size is dropped to bound memory)."""
    if n not in _cases:
        _cases.clear()
        gc.collect()
        case = sb.search_case(n)
        assert abs(sb.numba_decide(case) - sb.numpy_decide(case)) < 1e-4  # same search
        _cases[n] = (case, sb.faiss_index(case) if sb.faiss_available() else None)
    return _cases[n]


def _runner(impl: str, case: sb.SearchCase, index: Any) -> Callable[[], float]:
    if impl == "numba":
        return lambda: sb.numba_decide(case)
    if impl == "numba-search":
        sb.seal_probe(case)  # leaves the sealed probes in the scratch
        return lambda: sb.search_only(case)
    if impl == "numpy":
        return lambda: sb.numpy_decide(case)
    if impl == "faiss":
        return lambda: sb.faiss_search(index, case)
    return lambda: sb.stream_once(case)


def _ratio_lines() -> list[str]:
    lines = []
    if _medians:
        lines.append("store decide ratios (medians of the tests above, same run)")
    for n in SIZES:
        m = {impl: _medians.get((n, impl)) for impl in IMPLS}
        ours = m["numba"]
        if ours is None:
            continue
        parts = [f"N={n:>8}: decide {ours * 1e6:10.1f} us"]
        if m["faiss"]:
            parts.append(f"decide/faiss {ours / m['faiss']:5.2f}")
            if m["numba-search"]:
                parts.append(f"search/faiss {m['numba-search'] / m['faiss']:5.2f}")
        if m["stream"]:
            parts.append(f"decide/stream {ours / m['stream']:5.2f}")
        if m["numpy"]:
            parts.append(f"numpy/decide {m['numpy'] / ours:6.2f}")
        lines.append("  ".join(parts))
    if _interleaved:
        lines.append("store decide ratios (interleaved medians, same run)")
    for n, t in sorted(_interleaved.items()):
        parts = [f"N={n:>8}: decide {t['decide'] * 1e6:10.1f} us"]
        if "faiss" in t:
            parts.append(f"decide/faiss {t['decide'] / t['faiss']:5.2f}")
            parts.append(f"search/faiss {t['search'] / t['faiss']:5.2f}")
        parts.append(f"decide/stream {t['decide'] / t['stream']:5.2f}")
        lines.append("  ".join(parts))
    return lines


@pytest.fixture(scope="module", autouse=True)
def _ratio_report(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    _cases.clear()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    # The fixture's teardown runs under output capture: without this the report is
    # swallowed with the output of a passing test.
    with capture.global_and_fixture_disabled():
        for line in _ratio_lines():
            if line.startswith("store decide"):
                reporter.write_sep("-", line)
            else:
                reporter.write_line(line)


@pytest.mark.parametrize(("n", "impl"), [(n, impl) for n in SIZES for impl in IMPLS],
                         ids=[f"N={n}-{impl}" for n in SIZES for impl in IMPLS])
def test_decide(benchmark: Any, n: int, impl: str) -> None:
    if impl == "faiss" and not sb.faiss_available():
        pytest.skip("faiss is not installed (pip install '.[test]')")
    case, index = _case(n)
    benchmark.group = f"store.decide N={n}"
    benchmark.extra_info["live_keys"] = int((case.key_refs > 0).sum())
    result = benchmark(_runner(impl, case, index))
    assert isinstance(result, float)
    _medians[(n, impl)] = benchmark.stats.stats.median


@pytest.mark.parametrize("n", SIZES, ids=[f"N={n}" for n in SIZES])
def test_decide_ratios_interleaved(benchmark: Any, n: int) -> None:
    """The same contenders taking turns (`interleaved_per_call`, as `dispenser bench` runs
    them), so that a load change during the run hits all of them alike."""
    case, index = _case(n)
    sealed = replace(case, rotated=np.zeros_like(case.rotated),
                     scratch=np.zeros_like(case.scratch))
    sb.seal_probe(sealed)
    contenders = {"decide": lambda: sb.numba_decide(case),
                  "search": lambda: sb.search_only(sealed),
                  "stream": lambda: sb.stream_once(case)}
    if index is not None:
        contenders["faiss"] = lambda: sb.faiss_search(index, case)
    benchmark.group = "store.decide interleaved (one round: the whole turn-taking run)"
    timed = benchmark.pedantic(sb.interleaved_per_call, args=(contenders, perf.Options()),
                               rounds=1, iterations=1)
    _interleaved[n] = {name: seconds for name, (seconds, _) in timed.items()}
    assert all(seconds > 0 for seconds in _interleaved[n].values())


def test_admit_into_a_full_store(benchmark: Any) -> None:
    store, faces = sb.filled_store(1024, VirtualClock(1000.0))
    turn = [1024]
    benchmark.group = "store.admit"
    benchmark(sb.admit_one, store, faces, turn)
    counters = store.counters()
    # every admit after the 1,024 preloaded ones evicted the oldest
    assert counters.evictions == counters.admits - 1024 > 0
    store.close()


@pytest.mark.parametrize("capacity", [1024, 65536])
def test_sweep_with_nothing_due(benchmark: Any, capacity: int) -> None:
    store, _ = sb.filled_store(capacity, VirtualClock(1000.0))
    benchmark.group = "store.sweep"
    assert benchmark(store.sweep) == 0
    store.close()


@pytest.mark.parametrize("capacity", [1024, 65536])
def test_sweep_deleting_everything(benchmark: Any, capacity: int) -> None:
    made: list[Any] = []

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        clock = VirtualClock(1000.0)
        store, _ = sb.filled_store(capacity, clock)
        clock.advance(sb.RETENTION_S)
        made.append(store)
        return (), {}

    benchmark.group = "store.sweep"
    benchmark.pedantic(lambda: made[-1].sweep(), setup=setup, rounds=5, iterations=1)
    assert made[-1].counters().deletions == capacity
    for store in made:
        store.close()


@pytest.mark.parametrize("cache", ["compiling", "cached"])
def test_first_call_jit(benchmark: Any, cache: str) -> None:
    """A fresh process imports the kernels and calls each once, with an empty
    NUMBA_CACHE_DIR (compiles: what no cache=True would cost every start) or one the
    previous run filled (cache=True)."""
    dirs: list[tempfile.TemporaryDirectory[str]] = []

    def setup() -> tuple[tuple[str], dict[str, Any]]:
        d = tempfile.TemporaryDirectory(prefix="dispenser-numba-")
        dirs.append(d)
        if cache == "cached":
            sb.first_call_seconds(d.name)
        return (d.name,), {}

    benchmark.group = "store.jit"
    inner = benchmark.pedantic(sb.first_call_seconds, setup=setup, rounds=2, iterations=1)
    benchmark.extra_info["in_process_seconds"] = inner
    for d in dirs:
        d.cleanup()


@pytest.mark.parametrize("capacity", [1024, 65536, 1_048_576])
def test_memory_is_capacity_times_slot_size_plus_a_constant(benchmark: Any,
                                                            capacity: int) -> None:
    benchmark.group = "store.memory"
    used = benchmark.pedantic(sb.store_footprint, args=(capacity,), rounds=1, iterations=1)
    constant = used - capacity * sb.slot_bytes()
    benchmark.extra_info.update(bytes=used, slot_bytes=sb.slot_bytes(), constant=constant)
    assert 0 <= constant < 2**20  # keys (12 x 2 KiB) and scratch, whatever the capacity

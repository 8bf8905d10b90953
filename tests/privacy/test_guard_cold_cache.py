"""With numba's cache empty, the first decision and sweep after the write guard goes on
succeed, and the guard refuses nothing: the store's kernels were compiled (and their cache
written) when the store was imported, before the guard, as `dispenser run` orders it.

The child runs a copy of the package with no `__pycache__` at all and no `NUMBA_CACHE_DIR`,
so numba would cache next to the copied source, the place a cold first `dispenser run`
meets. Before the kernels were compiled at import, the first `decide` compiled under the
guard, numba's probe of its cache folder was refused and every decision failed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dispenser

_FIRST_DECISIONS = """
import sys
import numpy as np
import dispenser
from dispenser.clock import VirtualClock
from dispenser.config import StoreSettings
from dispenser.privacy import guard
from dispenser.store import MatchRule, TemplateStore

assert dispenser.__file__.startswith(sys.argv[1]), dispenser.__file__
store = TemplateStore(StoreSettings(), rule=MatchRule.fixed(0.93), clock=VirtualClock(0.0),
                      start_sweeper=False, zeroise_on_signals=False)
guard.install([sys.argv[2]])

def probe():
    vector = np.zeros(128, np.float32)
    vector[0] = 1.0
    return vector

decision = store.decide(probe())
store.commit(decision.reservation)
print("second", store.decide(probe()).dispense, "swept", store.sweep())
print("refusals", guard.refusals())
store.close()
"""


def test_first_decide_after_the_guard_succeeds_with_a_cold_numba_cache(tmp_path: Path) -> None:
    package = Path(dispenser.__file__).parent
    copy = tmp_path / "src"
    shutil.copytree(package, copy / "dispenser",
                    ignore=shutil.ignore_patterns("__pycache__"))
    status = tmp_path / "run"
    status.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = str(copy)
    done = subprocess.run([sys.executable, "-c", _FIRST_DECISIONS, str(copy), str(status)],
                          capture_output=True, text=True, timeout=600, check=False, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["second False swept 0", "refusals []"]
    assert list((copy / "dispenser" / "store" / "__pycache__").glob("kernels.*.nbi"))


def test_every_store_kernel_is_compiled_at_import_and_never_again() -> None:
    from numba.core.registry import CPUDispatcher

    from dispenser.store import kernels, transform

    # transform's inline helpers are compiled into the kernels that call them, not alone
    dispatchers = {f"{module.__name__}.{name}": value
                   for module in (kernels, transform) for name, value in vars(module).items()
                   if isinstance(value, CPUDispatcher)
                   and value.targetoptions.get("inline") != "always"}
    assert len(dispatchers) >= 10, sorted(dispatchers)
    for name, dispatcher in dispatchers.items():
        assert len(dispatcher.signatures) == 1, name
        assert not dispatcher._can_compile, name
    with pytest.raises(TypeError):
        kernels.squared_norm(np.zeros(4, np.float64))

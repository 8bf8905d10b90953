"""Invariant 2 and 5: copies are zeroised. The caller's probe after use, the rotated-probe
scratch after every decision, everything at close(), at garbage collection, and when the
process is stopped by SIGTERM or SIGINT (checked from inside a child process)."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable

import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.config import StoreSettings
from dispenser.errors import DispenserError
from dispenser.store import MatchRule, TemplateStore

BUFFERS = ("rows", "born", "served", "seq", "state", "rotated", "scratch", "keys")


def _nonzero(raw: dict[str, np.ndarray]) -> dict[str, int]:
    return {name: int(np.count_nonzero(raw[name])) for name in BUFFERS
            if np.count_nonzero(raw[name])}


def test_probe_is_zeroised_after_a_dispense(make_store: Callable[..., TemplateStore],
                                            template: Callable[[int], np.ndarray]) -> None:
    store = make_store()
    probe = template(1)
    store.decide(probe)
    assert not np.any(probe)


def test_probe_is_zeroised_after_a_denial(make_store: Callable[..., TemplateStore],
                                          template: Callable[[int], np.ndarray],
                                          serve: Callable[..., None]) -> None:
    store = make_store()
    serve(store, template(1))
    probe = template(1)
    assert not store.decide(probe).dispense
    assert not np.any(probe)


def test_probe_is_zeroised_when_refused_as_invalid(
        make_store: Callable[..., TemplateStore]) -> None:
    store = make_store()
    probe = np.full(128, 0.5, dtype=np.float32)  # not L2-normalised
    with pytest.raises(DispenserError, match="not L2-normalised"):
        store.decide(probe)
    assert not np.any(probe)


def test_probe_is_kept_only_when_asked(make_store: Callable[..., TemplateStore],
                                       template: Callable[[int], np.ndarray]) -> None:
    store = make_store()
    probe = template(1)
    store.decide(probe, keep_probe=True)
    assert np.array_equal(probe, template(1))


def test_rotated_probe_scratch_is_zeroised_after_every_decision(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    store = make_store(key_epoch_s=60.0)
    for person in range(5):  # entries under several epoch keys
        serve(store, template(person))
        assert not np.any(raw(store)["rotated"]) and not np.any(raw(store)["scratch"])
        clock.advance(70.0)
    assert not store.decide(template(4)).dispense
    assert not np.any(raw(store)["rotated"]) and not np.any(raw(store)["scratch"])


def test_close_zeroises_every_buffer(make_store: Callable[..., TemplateStore],
                                     template: Callable[[int], np.ndarray],
                                     serve: Callable[..., None],
                                     raw: Callable[[TemplateStore], dict[str, np.ndarray]]
                                     ) -> None:
    store = make_store(start_sweeper=True)
    serve(store, template(1))
    store.decide(template(2))  # one live, one reserved
    buffers = raw(store)
    assert _nonzero(buffers)
    store.close()
    assert _nonzero(buffers) == {}
    with pytest.raises(DispenserError, match="closed"):
        store.decide(template(3))


def test_leaving_the_context_zeroises(clock: VirtualClock,
                                      template: Callable[[int], np.ndarray],
                                      serve: Callable[..., None],
                                      raw: Callable[[TemplateStore], dict[str, np.ndarray]]
                                      ) -> None:
    with TemplateStore(StoreSettings(), rule=MatchRule.fixed(0.93), clock=clock) as store:
        serve(store, template(1))
        buffers = raw(store)
        assert _nonzero(buffers)
    assert _nonzero(buffers) == {}


def test_garbage_collected_store_is_zeroised(
        clock: VirtualClock, template: Callable[[int], np.ndarray],
        serve: Callable[..., None], raw: Callable[[TemplateStore], dict[str, np.ndarray]]
) -> None:
    store = TemplateStore(StoreSettings(), rule=MatchRule.fixed(0.93), clock=clock,
                          start_sweeper=False)
    serve(store, template(1))
    buffers = raw(store)
    del store
    gc.collect()
    assert _nonzero(buffers) == {}


_CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import numpy as np
    from dispenser.clock import VirtualClock
    from dispenser.config import StoreSettings
    from dispenser.store import MatchRule, TemplateStore

    mode = sys.argv[1]

    def nonzero():
        b = store.raw_buffers()
        arrays = (b.rows, b.born, b.served, b.seq, b.state, b.rotated, b.scratch, b.keys)
        return sum(int(np.count_nonzero(a)) for a in arrays)

    def report(signum, frame):  # the handler that was there before the store's
        # os.write, not print: the signal may land while the main thread is still inside
        # print(READY), and a buffered write from the handler re-enters it ("reentrant
        # call"; 8 runs in 10 on a loaded, emulated arm64 board).
        os.write(1, f"ZEROISED nonzero={nonzero()}\\n".encode())
        os._exit(0)

    if mode == "chain":
        signal.signal(signal.SIGTERM, report)
    store = TemplateStore(StoreSettings(), rule=MatchRule.fixed(0.93), clock=VirtualClock(1000.0))
    rng = np.random.default_rng(0)
    for _ in range(10):
        v = rng.standard_normal(128).astype(np.float32)
        v /= np.linalg.norm(v)
        store.commit(store.decide(v).reservation)
    try:  # entered before READY: the signal may arrive while print() is returning
        print(f"READY nonzero={nonzero()}", flush=True)
        while True:
            time.sleep(0.05)
    except KeyboardInterrupt:
        print(f"ZEROISED nonzero={nonzero()}", flush=True)
""")


def _run_child(mode: str, signum: int) -> tuple[str, int]:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, mode], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout is not None
        ready = child.stdout.readline()
        assert ready.startswith("READY") and ready.strip() != "READY nonzero=0"
        child.send_signal(signum)
        out, _ = child.communicate(timeout=60)
        return out.strip(), child.returncode
    finally:  # a child that ignored the signal must not outlive the test
        if child.poll() is None:
            child.kill()
            child.wait()


def test_sigterm_zeroises_and_chains_to_the_previous_handler() -> None:
    out, code = _run_child("chain", signal.SIGTERM)
    assert out == "ZEROISED nonzero=0"
    assert code == 0


def test_sigterm_still_terminates_the_process_as_before() -> None:
    out, code = _run_child("default", signal.SIGTERM)
    assert code == -signal.SIGTERM
    assert out == ""


def test_sigint_zeroises_then_raises_keyboard_interrupt() -> None:
    out, code = _run_child("default", signal.SIGINT)
    assert out == "ZEROISED nonzero=0"
    assert code == 0


def test_template_and_key_buffers_are_locked_against_swap(
        make_store: Callable[..., TemplateStore],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    """Every buffer that holds template or key bytes is handed to mlock (the OS may refuse
    when RLIMIT_MEMLOCK is low; that is counted and warned about, see docs/privacy.md)."""
    from dispenser.privacy.memory import LOCKS

    asked = LOCKS.locked_bytes + LOCKS.refused_bytes
    store = make_store(capacity=64)
    buffers = raw(store)
    expected = (buffers["rows"].nbytes + buffers["rotated"].nbytes + buffers["scratch"].nbytes
                + buffers["keys"].nbytes + store.raw_buffers().key_scratch.nbytes)
    assert LOCKS.locked_bytes + LOCKS.refused_bytes - asked == expected

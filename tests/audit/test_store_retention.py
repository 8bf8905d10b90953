"""Invariant 2 (retention) and 3 (time): templates are overwritten with zeros at the
retention age, by the sweeper thread even when nobody comes, after suspend-like clock
jumps too; wall-clock changes do nothing. Zeroisation is checked on the raw buffers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from dispenser.clock import VirtualClock
from dispenser.store import TemplateStore

# Real-time bound for waiting on the sweeper thread (it reacts within milliseconds).
WAIT_S = 10.0


def _wait_for(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def _all_zero(store_raw: dict[str, np.ndarray]) -> bool:
    return not any(np.any(store_raw[name]) for name in ("rows", "born", "served", "seq"))


def test_template_bytes_and_timestamps_are_zero_at_retention(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    store = make_store(retention_s=600.0)
    admitted = clock.now()
    serve(store, template(1))
    clock.set(admitted + 600.0 - 1e-6)
    store.sweep()
    assert np.any(raw(store)["rows"])  # still held just before retention
    clock.set(admitted + 600.0)  # exactly at retention
    assert store.sweep() == 1
    assert _all_zero(raw(store))
    assert store.counters().deletions == 1


def test_retention_counts_from_when_the_template_entered_the_store(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    """A late commit does not extend the template's life."""
    store = make_store(retention_s=100.0, deny_window_s=50.0, reservation_timeout_s=60.0)
    decision = store.decide(template(1))
    assert decision.reservation is not None
    clock.advance(59.0)
    assert store.commit(decision.reservation)
    clock.advance(41.0)  # 100 s after the decision, 41 s after the commit
    store.sweep()
    assert _all_zero(raw(store))


def test_sweeper_thread_deletes_with_no_traffic(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    store = make_store(start_sweeper=True, retention_s=600.0, sweep_period_s=1.0)
    serve(store, template(1))
    serve(store, template(2))
    # Nobody comes any more; only time passes, one sweep period at a time.
    for _ in range(601):
        clock.advance(1.0)
    assert _wait_for(lambda: store.counters().deletions == 2)
    assert _all_zero(raw(store))
    assert not np.any(raw(store)["keys"])


def test_sweeper_thread_deletes_after_a_suspend_like_jump(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    store = make_store(start_sweeper=True, capacity=64)
    for person in range(50):
        serve(store, template(person))
        clock.advance(3.0)
    clock.advance(3600.0)  # the board slept for an hour; CLOCK_BOOTTIME kept counting
    assert _wait_for(lambda: store.counters().deletions == 50)
    assert _all_zero(raw(store))
    assert not np.any(raw(store)["keys"])


def test_a_jump_deletes_exactly_what_is_due(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        nonzero_rows: Callable[[TemplateStore], int]) -> None:
    store = make_store(retention_s=600.0)
    serve(store, template(1))
    clock.advance(300.0)
    serve(store, template(2))
    clock.advance(300.0)  # the first reaches 600 s, the second is 300 s old
    assert store.sweep() == 1
    assert nonzero_rows(store) == 1
    assert not store.decide(template(2)).dispense


def test_wall_clock_change_does_nothing(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        nonzero_rows: Callable[[TemplateStore], int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store()
    serve(store, template(1))
    real_time = time.time
    # The wall clock jumps a day forward (NTP, a technician, a dead RTC battery) ...
    monkeypatch.setattr(time, "time", lambda: real_time() + 86400.0)
    assert store.sweep() == 0
    assert nonzero_rows(store) == 1
    assert not store.decide(template(1)).dispense
    # ... and a day back.
    monkeypatch.setattr(time, "time", lambda: real_time() - 86400.0)
    assert store.sweep() == 0
    assert not store.decide(template(1)).dispense
    assert store.counters().deletions == 0


def test_decide_deletes_what_is_due_before_matching(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        nonzero_rows: Callable[[TemplateStore], int]) -> None:
    """Even if the sweeper is late, nothing past retention is ever compared or kept."""
    store = make_store(retention_s=600.0, deny_window_s=600.0)
    serve(store, template(1))
    clock.advance(600.0)
    assert store.decide(template(2)).dispense
    assert store.counters().deletions == 1
    assert nonzero_rows(store) == 1  # only the new person


def test_unresolved_reservation_is_rolled_back_and_zeroised_after_the_timeout(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]]) -> None:
    store = make_store(start_sweeper=True, reservation_timeout_s=30.0, sweep_period_s=1.0)
    decision = store.decide(template(1))
    assert decision.reservation is not None
    clock.advance(30.0 - 1e-6)
    store.sweep()
    assert np.any(raw(store)["rows"])
    clock.advance(1.0)  # the timeout passed; the sweeper's next period comes
    assert _wait_for(lambda: store.counters().timeouts == 1)
    assert _all_zero(raw(store))
    assert not store.commit(decision.reservation)  # too late: nothing becomes live
    assert store.decide(template(1)).dispense


def test_sweeper_never_skips_what_falls_due_while_it_is_sweeping(
        clock: VirtualClock, make_store: Callable[..., TemplateStore],
        template: Callable[[int], np.ndarray], serve: Callable[..., None],
        raw: Callable[[TemplateStore], dict[str, np.ndarray]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """If time passes while a sweep runs (a descheduled thread, a slow board), the next
    sweep still comes one period after that sweep started, not a period after it ended."""
    store = make_store(start_sweeper=False, retention_s=600.0, sweep_period_s=1.0)
    serve(store, template(1))
    real_sweep = store.sweep
    swept = threading.Event()

    def slow_sweep() -> int:
        freed = real_sweep()
        if not swept.is_set():
            clock.advance(600.0)  # the template falls due while this sweep is running
            swept.set()
        return freed

    monkeypatch.setattr(store, "sweep", slow_sweep)
    sweeper = threading.Thread(target=store._sweep_forever, daemon=True)
    sweeper.start()
    clock.advance(1.0)  # first sweep; during it the clock reaches the retention limit
    assert swept.wait(WAIT_S)
    assert _wait_for(lambda: _all_zero(raw(store)))
    store._stop.set()
    sweeper.join(WAIT_S)

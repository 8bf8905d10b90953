"""The transition table, exhaustively: every listed transition is taken, every other
(state, event) pair is ignored, and every state can be reached from IDLE and can get back."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from dispenser.clock import VirtualClock
from dispenser.service.state import TRANSITIONS, Event, State, StateMachine


def _path_to(target: State) -> list[Event]:
    """Shortest event sequence from IDLE to `target` (breadth-first over the table)."""
    queue: deque[tuple[State, list[Event]]] = deque([(State.IDLE, [])])
    seen = {State.IDLE}
    while queue:
        state, path = queue.popleft()
        if state is target:
            return path
        for (src, ev), dst in TRANSITIONS.items():
            if src is state and dst not in seen:
                seen.add(dst)
                queue.append((dst, [*path, ev]))
    raise AssertionError(f"{target} unreachable from IDLE")


def _machine_in(state: State, clock: VirtualClock) -> StateMachine:
    m = StateMachine(clock)
    for ev in _path_to(state):
        assert m.fire(ev) is not None
    assert m.state is state
    return m


@pytest.mark.parametrize(("pair", "target"), list(TRANSITIONS.items()),
                         ids=[f"{s.value}-{e.value}" for s, e in TRANSITIONS])
def test_every_listed_transition_is_taken(pair: tuple[State, Event], target: State,
                                          clock: VirtualClock) -> None:
    source, ev = pair
    m = _machine_in(source, clock)
    clock.advance(1.5)
    step = m.fire(ev)
    assert step is not None
    assert (step.source, step.event, step.target, step.at) == (source, ev, target, clock.now())
    assert m.state is target
    assert m.time_in_state() == 0.0


def test_every_other_pair_is_ignored(clock: VirtualClock) -> None:
    ignored = [(s, e) for s, e in itertools.product(State, Event) if (s, e) not in TRANSITIONS]
    assert ignored  # the table is not total: e.g. a face appearing while the motor runs
    for source, ev in ignored:
        m = _machine_in(source, clock)
        assert not m.can_fire(ev)
        assert m.fire(ev) is None
        assert m.state is source


def test_every_state_is_reachable_and_returns_to_idle(clock: VirtualClock) -> None:
    for state in State:
        _machine_in(state, clock)
        back: set[State] = {State.IDLE}
        changed = True
        while changed:   # states from which IDLE is reachable
            changed = False
            for (src, _), dst in TRANSITIONS.items():
                if dst in back and src not in back:
                    back.add(src)
                    changed = True
        assert state in back, f"{state} can never return to IDLE"


def test_time_in_state_follows_the_injected_clock(clock: VirtualClock) -> None:
    m = StateMachine(clock)
    clock.advance(2.0)
    assert m.time_in_state() == 2.0
    m.fire(Event.FACE_IN_VIEW)
    clock.advance(0.5)
    assert m.time_in_state() == 0.5


def test_a_running_dispense_is_resolved_before_faults_or_buttons(clock: VirtualClock) -> None:
    m = _machine_in(State.DISPENSING, clock)
    for ev in (Event.FAULT_RAISED, Event.BUTTON_PRESSED, Event.FACE_LEFT, Event.MESSAGE_DONE):
        assert m.fire(ev) is None
    assert m.state is State.DISPENSING
    assert m.fire(Event.DISPENSE_FAILED) is not None
    assert m.state is State.FAULT

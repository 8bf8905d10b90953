"""The decision state machine, as data: one transition table, no I/O.

Why a table: the behaviour the person in front of the machine experiences (when is a face
decided, when is a message shown, when does a fault take over) must be readable in one
place and testable exhaustively. `TRANSITIONS` lists every legal (state, event) pair; an
event that has no entry for the current state is *ignored* (the state does not change and
`fire` returns None), e.g. a face appearing while the motor runs. docs/service.md draws
the same table as a diagram; tests/service/test_service_state.py walks every entry and every
ignored pair.

The machine only knows time through the injected `Clock` (for `time_in_state`); the
service decides which events to fire.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType

from dispenser.clock import Clock


class State(enum.Enum):
    """Where the machine is in serving one visitor."""

    IDLE = "idle"                # nobody being served; cheap motion check + slow detection
    FACE_SEEN = "face_seen"      # a face in view, not (yet) steady or not passing quality
    HOLD_STILL = "hold_still"    # the chosen face is steady; templates are being collected
    DECIDE = "decide"            # hold-still complete: the store decides (instantaneous)
    DISPENSING = "dispensing"    # store slot reserved, motor running the face ribbon
    SERVED = "served"            # "Here you go" (or "a shorter ribbon") is shown a moment
    DENIED = "denied"            # "dispensed to you recently" is shown for a moment
    BUTTON = "button"            # motor running the no-scan ribbon (no face processing)
    FAULT = "fault"              # camera, controller or paper problem; nothing is decided


class Event(enum.Enum):
    """What the service observed (one per call of `StateMachine.fire`)."""

    FACE_IN_VIEW = "face_in_view"          # at least one face detected
    FACE_STEADY = "face_steady"            # the chosen face is steady and passes quality
    FACE_UNSTEADY = "face_unsteady"        # it moved / failed quality: hold-still restarts
    FACE_LEFT = "face_left"                # no face (or the chosen face is gone)
    HOLD_COMPLETE = "hold_complete"        # steady for vision.hold_still_s, template built
    DECIDED_DISPENSE = "decided_dispense"  # store: no sure match, slot reserved (full/short)
    DECIDED_DENY = "decided_deny"          # store: served within the deny window
    DISPENSE_OK = "dispense_ok"            # controller reported DONE (store committed)
    DISPENSE_FAILED = "dispense_failed"    # jam / empty / timeout / offline (store rolled back)
    MESSAGE_DONE = "message_done"          # the result message was shown long enough
    BUTTON_PRESSED = "button_pressed"      # a no-scan press outside the rate limit
    BUTTON_DONE = "button_done"            # the no-scan ribbon finished (ok or not)
    FAULT_RAISED = "fault_raised"          # camera / controller / paper / watchdog problem
    FAULT_CLEARED = "fault_cleared"        # every fault is gone


_S, _E = State, Event

# The whole behaviour. Keep docs/service.md in step with this table.
TRANSITIONS: MappingProxyType[tuple[State, Event], State] = MappingProxyType({
    (_S.IDLE, _E.FACE_IN_VIEW): _S.FACE_SEEN,
    (_S.IDLE, _E.BUTTON_PRESSED): _S.BUTTON,
    (_S.IDLE, _E.FAULT_RAISED): _S.FAULT,

    (_S.FACE_SEEN, _E.FACE_STEADY): _S.HOLD_STILL,
    (_S.FACE_SEEN, _E.FACE_LEFT): _S.IDLE,
    (_S.FACE_SEEN, _E.BUTTON_PRESSED): _S.BUTTON,
    (_S.FACE_SEEN, _E.FAULT_RAISED): _S.FAULT,

    (_S.HOLD_STILL, _E.HOLD_COMPLETE): _S.DECIDE,
    (_S.HOLD_STILL, _E.FACE_UNSTEADY): _S.FACE_SEEN,
    (_S.HOLD_STILL, _E.FACE_LEFT): _S.IDLE,
    (_S.HOLD_STILL, _E.BUTTON_PRESSED): _S.BUTTON,
    (_S.HOLD_STILL, _E.FAULT_RAISED): _S.FAULT,

    # DECIDE is left in the same step it is entered: the store answers synchronously.
    (_S.DECIDE, _E.DECIDED_DISPENSE): _S.DISPENSING,
    (_S.DECIDE, _E.DECIDED_DENY): _S.DENIED,
    (_S.DECIDE, _E.FAULT_RAISED): _S.FAULT,          # the store failed to decide

    # A running dispense is always resolved (commit or rollback) before anything else,
    # so faults and button presses wait for DISPENSE_OK / DISPENSE_FAILED.
    (_S.DISPENSING, _E.DISPENSE_OK): _S.SERVED,
    (_S.DISPENSING, _E.DISPENSE_FAILED): _S.FAULT,

    (_S.SERVED, _E.MESSAGE_DONE): _S.IDLE,
    (_S.SERVED, _E.BUTTON_PRESSED): _S.BUTTON,
    (_S.SERVED, _E.FAULT_RAISED): _S.FAULT,
    (_S.DENIED, _E.MESSAGE_DONE): _S.IDLE,
    (_S.DENIED, _E.BUTTON_PRESSED): _S.BUTTON,
    (_S.DENIED, _E.FAULT_RAISED): _S.FAULT,

    # The button works whenever the motor is free and nothing is faulty (it is the way to
    # get paper without giving a face); while it runs, faces are not processed.
    (_S.BUTTON, _E.BUTTON_DONE): _S.IDLE,

    (_S.FAULT, _E.FAULT_CLEARED): _S.IDLE,
})


@dataclass(frozen=True)
class Transition:
    """One step the machine took (what the service logs and the simulator prints)."""

    source: State
    event: Event
    target: State
    at: float


class StateMachine:
    """Holds the current state and when it was entered; changes only through `fire`."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._state = State.IDLE
        self._entered_at = clock.now()

    @property
    def state(self) -> State:
        return self._state

    def time_in_state(self) -> float:
        """Seconds since the current state was entered, on the injected clock."""
        return self._clock.now() - self._entered_at

    def can_fire(self, event: Event) -> bool:
        return (self._state, event) in TRANSITIONS

    def fire(self, event: Event) -> Transition | None:
        """Apply `event`; return the transition taken, or None if the event is ignored
        in the current state."""
        target = TRANSITIONS.get((self._state, event))
        if target is None:
            return None
        now = self._clock.now()
        step = Transition(self._state, event, target, now)
        self._state, self._entered_at = target, now
        return step

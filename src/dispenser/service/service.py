"""The edge service: camera frames in, one decision per visit, one ribbon out.

`DispenserService.step()` does one tick: pick up a finished dispense, poll the controller
(state, no-scan button), read one frame, run as much of the vision pipeline as the state
needs, fire the state machine's events (`dispenser.service.state`), update the display and
the counters. It never blocks on the motor (see `actuator`) and never raises on a bad
frame. `run()` loops `step()` until stopped or a finite source ends; the simulator and the
tests call `step()` themselves against a `VirtualClock`.

What runs when (the idle cost): with nobody in view only a 32x24 grey thumbnail is
compared with the last detected frame, and the detector runs at most
`vision.idle_detect_hz`; the embedder runs only while a face holds still (at most ~2K
times per hold, `holdstill`). Faces that were decided in this visit keep being tracked at
full rate so the person who just got paper is not decided again.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dispenser.clock import Clock
from dispenser.config import Settings
from dispenser.logsafe import event
from dispenser.service.actuator import MotorWorker, Outcome
from dispenser.service.button import ButtonGate
from dispenser.service.frames import FrameSource, FrameSourceError
from dispenser.service.holdstill import HoldStill, choose_target
from dispenser.service.messages import Display, Message
from dispenser.service.motion import MotionGate
from dispenser.service.ports import MotorLike, PipelineLike, StoreLike, TrackerLike
from dispenser.service.state import Event, State, StateMachine, Transition
from dispenser.service.status import (
    ServiceCounters,
    format_status,
    status_record,
    write_status,
)
from dispenser.service.watchdog import Watchdog

_log = logging.getLogger("dispenser.service")

BUTTON_JOB = "button"
CONTROLLER_POLL_S = 0.2         # controller state + button presses are read this often
CAMERA_BACKOFF_S = (1.0, 30.0)  # first and longest wait between camera re-open attempts
STATUS_FILE_EVERY_S = 5.0       # the status file is rewritten this often
IDLE_WAIT_S = 0.01              # run(): pause when no frame was due
CLOSE_WAIT_S = 10.0             # close(): real seconds a running dispense may still take
_MIN_FRAME_SIDE = 16

# Controller states (dispenser.motor.ControllerState names) that stop the machine, and the
# fault each one raises. READY and BUSY are healthy.
_CONTROLLER_FAULTS = {"OUT_OF_PAPER": "paper", "JAMMED": "jam", "DOOR_OPEN": "door",
                      "OFFLINE": "controller"}
_PERSISTENT = math.inf

# What a face that fails the quality gate is told (vision.face reason codes).
_ADVICE = {"too_small": Message.COME_CLOSER, "several_faces": Message.ONE_AT_A_TIME}

_BUSY_STATES = (State.DISPENSING, State.SERVED, State.DENIED, State.BUTTON)


def _valid_frame(frame: Any) -> bool:
    return (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
            and frame.shape[2] == 3 and min(frame.shape[:2]) >= _MIN_FRAME_SIDE)


class DispenserService:
    """One dispenser: the state machine plus everything it drives."""

    def __init__(self, settings: Settings, *, clock: Clock, frames: FrameSource,
                 store: StoreLike, pipeline: PipelineLike, motor: MotorLike,
                 display: Display, tracker: TrackerLike | None = None,
                 status_dir: Path | None = None,
                 on_transition: Callable[[Transition], None] | None = None) -> None:
        now = clock.now()
        self._settings = settings
        self._clock = clock
        self._frames = frames
        self._store = store
        self._pipeline = pipeline
        self._embedded_unscrubbed = False  # an embedding happened since the last scrub
        self._display = display
        self._motor = motor
        self._tracker = tracker if tracker is not None else _default_tracker(clock)
        self._status_dir = status_dir
        self._on_transition = on_transition
        self.machine = StateMachine(clock)
        self.counters = ServiceCounters()
        self.hold = HoldStill(settings.vision.hold_still_s)
        self._motion = MotionGate(settings.vision.idle_detect_hz)
        self._button = ButtonGate(settings.dispense.button_min_interval_s)
        self._worker = MotorWorker(motor)
        self._frame_watchdog = Watchdog(settings.vision.watchdog_s, now)
        self._decided: dict[int, float] = {}    # track id -> when it was decided (this visit)
        self._faults: dict[str, float] = {}     # fault name -> expiry (inf: until cleared)
        self._camera_open = False
        self._camera_retry_at = now
        self._camera_backoff = CAMERA_BACKOFF_S[0]
        self._next_controller_poll = now
        self._controller_state = "READY"
        self._notice: tuple[Message, float] | None = None
        self._short_ribbon = False              # the face ribbon running / shown is short
        self._advice = Message.LOOK_AT_CAMERA
        self._progress = 0.0
        self._someone_in_view = False
        self._visible_ids: list[int] = []
        self._button_quiet_until = now
        self._started_at = now
        self._next_status_file = now
        self._next_status_log = now + settings.log.status_every_s
        self.last_step_at = now

    # ----------------------------------------------------------------- public surface

    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def faults(self) -> frozenset[str]:
        return frozenset(self._faults)

    @property
    def motor_busy(self) -> bool:
        return self._worker.busy

    @property
    def finished(self) -> bool:
        """A finite frame source has ended and nothing is left to finish."""
        return (self._frames.finished and not self._worker.busy
                and self.state not in _BUSY_STATES)

    def wait_motor(self, timeout: float) -> bool:
        """Block up to `timeout` real seconds for a running dispense to end (tests)."""
        return self._worker.wait(timeout)

    def step(self) -> None:
        """One tick of the machine (never raises for a bad frame or a device problem)."""
        now = self._clock.now()
        self.last_step_at = now
        self._collect_outcome(now)
        self._poll_controller(now)
        self._sync_faults(now)          # a fault seen now stops this frame's processing
        frame = self._next_frame(now)
        if frame is not None:
            self._process(frame, now)
        self._expire(now)
        self._sync_faults(now)
        self._show(frame if frame is not None and _valid_frame(frame) else None)
        self._report(now)

    def run(self, stop: threading.Event) -> None:
        """Step until `stop` is set or a finite source has ended."""
        while not stop.is_set():
            before = self.counters.frames
            self.step()
            if self.finished:
                break
            if self.counters.frames == before:
                self._clock.sleep_until(self._clock.now() + IDLE_WAIT_S, stop)

    def __enter__(self) -> DispenserService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status(self) -> dict[str, Any]:
        """Counters only (no personal data): what `dispenser run --status` prints."""
        try:
            store_counts = self._store.counters()
        except Exception:  # a closed store has no counters; the service's still count
            store_counts = None
        return status_record(self.counters, self.state.value,
                             self._clock.now() - self._started_at, store_counts)

    def close(self) -> None:
        """Let a running dispense finish (bounded) and commit or roll it back, stop the
        dispense thread, overwrite every template buffer with zeros, and leave the final
        counters in the status file."""
        if self._worker.wait(CLOSE_WAIT_S):
            self._collect_outcome(self._clock.now())
        self._worker.close()
        self._scrub_embedder()
        self.hold.release()
        self._frames.close()
        self._next_status_file = self._clock.now()
        self._report(self._clock.now())

    # ------------------------------------------------------------------ state changes

    def _fire(self, ev: Event) -> bool:
        step = self.machine.fire(ev)
        if step is None:
            return False
        if step.target in (State.IDLE, State.FAULT, State.BUTTON, State.FACE_SEEN):
            self.hold.clear()
            self._scrub_embedder()
        if step.target is State.FAULT:
            self.counters.faults += 1
        level = logging.DEBUG if step.target in (State.FACE_SEEN, State.HOLD_STILL,
                                                 State.IDLE) else logging.INFO
        event(_log, "state", level, source=step.source.value, event=ev.value,
              target=step.target.value)
        if self._on_transition is not None:
            self._on_transition(step)
        return True

    # ----------------------------------------------------------------- motor outcome

    def _collect_outcome(self, now: float) -> None:
        outcome = self._worker.poll()
        if outcome is None:
            return
        self.counters.paper_mm += max(0, outcome.dispensed_mm)
        if outcome.tag == BUTTON_JOB:
            self._button_outcome(outcome, now)
        else:
            self._face_outcome(outcome, now)

    def _face_outcome(self, outcome: Outcome, now: float) -> None:
        if outcome.ok:
            self._store_call(self._store.commit, outcome.tag)
            if self._short_ribbon:
                self.counters.served_short += 1
            else:
                self.counters.served += 1
            self._fire(Event.DISPENSE_OK)
            return
        # Any failure: the person must not be denied next time for paper they never got.
        self._store_call(self._store.rollback, outcome.tag)
        self.counters.dispense_failures += 1
        self._dispense_failed(outcome, now)
        self._fire(Event.DISPENSE_FAILED)

    def _button_outcome(self, outcome: Outcome, now: float) -> None:
        if outcome.ok:
            self.counters.button_served += 1
        else:
            self.counters.button_failures += 1
            self._button.refund()
            self._dispense_failed(outcome, now)
        self._button_quiet_until = now + self._settings.display.message_s
        self._fire(Event.BUTTON_DONE)

    def _dispense_failed(self, outcome: Outcome, now: float) -> None:
        event(_log, "dispense_failed", logging.WARNING, error=outcome.error or "unknown",
              dispensed_mm=outcome.dispensed_mm)
        # Shown for at least one message time; the controller state keeps it up if the
        # cause (jam, empty roll, door) persists.
        self._faults["dispense"] = now + self._settings.display.message_s
        if outcome.error == "paper_empty":
            self._faults["paper"] = now + self._settings.display.message_s

    def _store_call(self, resolve: Callable[[Any], bool], reservation: Any) -> None:
        """Commit or roll back. A reservation the store already let go (its timeout) only
        means this person will not be refused next time: logged, never fatal."""
        what = resolve.__name__
        try:
            done = resolve(reservation)
        except Exception as exc:
            event(_log, f"store_{what}_failed", logging.ERROR, kind=type(exc).__name__)
            return
        if done is False:
            event(_log, f"store_{what}_too_late", logging.WARNING)

    # ------------------------------------------------------ controller state, button

    def _poll_controller(self, now: float) -> None:
        if now < self._next_controller_poll:
            return
        self._next_controller_poll = now + CONTROLLER_POLL_S
        for name in _CONTROLLER_FAULTS.values():
            if self._faults.get(name) == _PERSISTENT:
                del self._faults[name]
        try:
            state_name = str(getattr(self._motor.state(), "name", "OFFLINE"))
            presses = self._motor.button_presses()
        except Exception as exc:  # a driver bug reads as an offline controller
            state_name, presses = f"OFFLINE ({type(exc).__name__})", 0
        if state_name != self._controller_state:
            self._controller_state = state_name
            event(_log, "controller", state=state_name.lower())
        fault = _CONTROLLER_FAULTS.get(state_name.split(" ")[0])
        if fault is not None:
            self._faults[fault] = _PERSISTENT
        if presses > 0:
            self._button_pressed(presses, now)

    def _button_pressed(self, presses: int, now: float) -> None:
        """Several presses between two polls are one impatient press."""
        if self._faults or self._worker.busy or not self.machine.can_fire(
                Event.BUTTON_PRESSED):
            self.counters.button_ignored += presses
            return
        if not self._button.allow(now):
            self.counters.button_refused += presses
            self._notice = (Message.BUTTON_WAIT, now + self._settings.display.message_s)
            return
        # The person chose not to give their face: whoever is in view now is not scanned
        # into a decision in this visit.
        for track_id in self._visible_ids:
            self._decided[track_id] = now
        self._worker.submit(self._settings.dispense.button_ribbon_mm, BUTTON_JOB)
        self._fire(Event.BUTTON_PRESSED)

    # ----------------------------------------------------------------------- frames

    def _next_frame(self, now: float) -> np.ndarray | None:
        if not self._camera_open and not self._open_camera(now):
            return None
        try:
            frame = self._frames.read()
        except FrameSourceError as exc:
            self._camera_lost(now, str(exc))
            return None
        except Exception as exc:  # a driver error is a lost camera, never a crash
            self._camera_lost(now, f"camera: read failed ({type(exc).__name__})")
            return None
        if frame is None:
            if not self._frames.finished and self._frame_watchdog.stalled(now):
                self.counters.stalls += 1
                self._camera_lost(now, f"camera: no frame for "
                                       f"{self._frame_watchdog.silent_for(now):.0f} s")
            return None
        self.counters.frames += 1
        self._frame_watchdog.beat(now)
        # Only a delivered frame proves the camera works again: a camera that opens and
        # then fails keeps backing off instead of being retried every second.
        self._camera_backoff = CAMERA_BACKOFF_S[0]
        return frame

    def _open_camera(self, now: float) -> bool:
        if now < self._camera_retry_at:
            return False
        try:
            self._frames.open()
        except FrameSourceError as exc:
            event(_log, "camera_unavailable", logging.WARNING, error=repr(str(exc)),
                  retry_in_s=self._camera_backoff)
            self._faults["camera"] = _PERSISTENT
            self._retry_camera_later(now)
            return False
        if "camera" in self._faults:
            self.counters.camera_reopens += 1
            event(_log, "camera_back", source=repr(self._frames.name))
        self._faults.pop("camera", None)
        self._camera_open = True
        self._frame_watchdog.beat(now)
        self._motion.reset()
        return True

    def _camera_lost(self, now: float, reason: str) -> None:
        event(_log, "camera_lost", logging.WARNING, error=repr(reason),
              retry_in_s=self._camera_backoff)
        self._frames.close()
        self._camera_open = False
        self._faults["camera"] = _PERSISTENT
        self._retry_camera_later(now)

    def _retry_camera_later(self, now: float) -> None:
        """Next re-open after the current back-off, which doubles up to its ceiling (1, 2,
        4 ... 30 s) until a frame is delivered."""
        self._camera_retry_at = now + self._camera_backoff
        self._camera_backoff = min(2 * self._camera_backoff, CAMERA_BACKOFF_S[1])

    # --------------------------------------------------------------------- vision

    def _process(self, frame: np.ndarray, now: float) -> None:
        if not _valid_frame(frame):
            self.counters.bad_frames += 1
            return
        state = self.state
        if state in (State.FAULT, State.DECIDE, State.BUTTON):
            return                      # the button path runs no face processing at all
        gated = state is State.IDLE and not self._someone_in_view
        if gated and not self._motion.should_detect(frame, now):
            self.counters.idle_skips += 1
            return
        tracks = self._detect_and_track(frame)
        if tracks is None:
            return
        if gated:
            self._motion.detected(now)
        live = [t for t in tracks if not t.lost]
        self._someone_in_view = bool(live)
        self._visible_ids = [t.id for t in live]
        self._forget_departed(now)
        if now < self._button_quiet_until:
            # Whoever pressed the button is not scanned into a decision in this visit,
            # even if the detector first sees them only after their ribbon.
            for t in live:
                self._decided.setdefault(t.id, now)
        if state in _BUSY_STATES:
            return
        eligible = [t for t in live if t.id not in self._decided]
        if state is State.IDLE and (not eligible or not self._fire(Event.FACE_IN_VIEW)):
            return
        if not eligible:
            self._fire(Event.FACE_LEFT)
            return
        self._serve(frame, eligible, now)

    def _detect_and_track(self, frame: np.ndarray) -> list[Any] | None:
        try:
            faces = self._pipeline.detect(frame)
            self.counters.detections += 1
            return list(self._tracker.update(faces))
        except Exception as exc:  # never crash on a bad frame
            self.counters.bad_frames += 1
            event(_log, "frame_rejected", logging.DEBUG, kind=type(exc).__name__)
            return None

    def _forget_departed(self, now: float) -> None:
        """Re-arm: a decided face that left, or stayed past the cool-down, may be decided
        again (the store still refuses a repeat inside the deny window)."""
        visible = set(self._visible_ids)
        cooldown = self._settings.vision.decision_cooldown_s
        self._decided = {tid: t for tid, t in self._decided.items()
                         if tid in visible and now - t < cooldown}

    def _serve(self, frame: np.ndarray, eligible: list[Any], now: float) -> None:
        """FACE_SEEN / HOLD_STILL with at least one undecided face in view."""
        target = choose_target(eligible, self.hold.track_id, set())
        if target is None:          # faces in view, none passes the quality gate
            self._advice = _advice_for(eligible)
            self._unsteady(None, now)
            return
        if target.id != self.hold.track_id or target.steady_s <= 0.0:
            self._unsteady(target.id, now)
            return
        self._fire(Event.FACE_STEADY)
        self._progress = self.hold.progress(now, float(target.steady_s))
        if target.missed > 0 or not target.face.quality.ok:
            # The tracker bridged a detection gap (its face is from an earlier frame) or
            # let a blink or glance pass (this face fails the gate): the hold continues,
            # but this frame is neither embedded nor decided on.
            return
        rank = float(target.face.quality.frame_rank)
        if self.hold.wants_embedding(rank, now):
            try:
                self._embedded_unscrubbed = True
                self._pipeline.embed(frame, target.face, self.hold.scratch)
                self.hold.keep(rank, now)
                self.counters.embeddings += 1
            except Exception as exc:
                self.hold.scratch.fill(0.0)
                self.counters.bad_frames += 1
                event(_log, "embed_failed", logging.DEBUG, kind=type(exc).__name__)
        if self.hold.complete(now, float(target.steady_s)):
            self._decide(target.id, now)

    def _unsteady(self, track_id: int | None, now: float) -> None:
        """The hold restarts (for `track_id`, or for nobody)."""
        self._fire(Event.FACE_UNSTEADY)
        self._progress = 0.0
        self._scrub_embedder()  # the embeddings of the abandoned hold serve no decision
        if track_id is None:
            self.hold.clear()
        else:
            self._advice = Message.LOOK_AT_CAMERA
            self.hold.start(track_id, now)

    def _scrub_embedder(self) -> None:
        """Once per hold, after its last embedding (decided or abandoned): overwrite the
        embedder's activations of the face, so none outlives the decision it served."""
        if self._embedded_unscrubbed:
            self._embedded_unscrubbed = False
            self._pipeline.scrub()

    def _decide(self, track_id: int, now: float) -> None:
        self._fire(Event.HOLD_COMPLETE)
        self._decided[track_id] = now
        try:
            self._decide_and_act(now)
        finally:
            # After the motor has its job: the scrub is one network pass, which would
            # otherwise stand between the decision and the ribbon.
            self._scrub_embedder()

    def _decide_and_act(self, now: float) -> None:
        try:
            decision = self._store.decide(self.hold.build_probe())
        except Exception as exc:
            event(_log, "store_decide_failed", logging.ERROR, kind=type(exc).__name__)
            self._faults["store"] = now + self._settings.display.message_s
            self._fire(Event.FAULT_RAISED)
            return
        finally:
            self.hold.clear()
        self.counters.decisions += 1
        if decision.dispense:
            # A likely (not certain) match gets the shorter ribbon; its template is kept
            # like any other, so a second repeat inside the deny window is refused.
            self._short_ribbon = bool(decision.short)
            ribbon = self._settings.dispense
            length = ribbon.short_ribbon_mm if self._short_ribbon else ribbon.ribbon_mm
            self._worker.submit(length, decision.reservation)
            self._fire(Event.DECIDED_DISPENSE)
        else:
            self.counters.denied += 1
            self._fire(Event.DECIDED_DENY)

    # ------------------------------------------------------- timers, faults, display

    def _expire(self, now: float) -> None:
        if (self.state in (State.SERVED, State.DENIED)
                and self.machine.time_in_state() >= self._settings.display.message_s):
            self._fire(Event.MESSAGE_DONE)
        if self._notice is not None and now >= self._notice[1]:
            self._notice = None

    def _sync_faults(self, now: float) -> None:
        for name, until in list(self._faults.items()):
            if now >= until:
                del self._faults[name]
        if self._faults:
            if self.machine.can_fire(Event.FAULT_RAISED):
                event(_log, "fault", logging.WARNING, faults=",".join(sorted(self._faults)))
                self._fire(Event.FAULT_RAISED)
        elif self.state is State.FAULT:
            self._fire(Event.FAULT_CLEARED)

    def _show(self, frame: np.ndarray | None) -> None:
        """Tell the display what to say; `frame` (this step's, if any) feeds its preview."""
        state = self.state
        progress: float | None = None
        if state is State.FAULT:
            message = Message.OUT_OF_PAPER if "paper" in self._faults else Message.UNAVAILABLE
        elif state is State.HOLD_STILL:
            message, progress = Message.HOLD_STILL, self._progress
        elif state is State.FACE_SEEN:
            message = self._advice
        elif state in (State.DISPENSING, State.BUTTON, State.DECIDE):
            message = Message.DISPENSING
        elif state is State.SERVED:
            message = Message.SHORT_RIBBON if self._short_ribbon else Message.HERE_YOU_GO
        elif state is State.DENIED:
            message = Message.TRY_LATER
        else:
            message = Message.WELCOME
        if self._notice is not None and state in (State.IDLE, State.FACE_SEEN):
            message, progress = self._notice[0], None
        self._display.show(message, progress, frame)

    def _report(self, now: float) -> None:
        if self._status_dir is not None and now >= self._next_status_file:
            self._next_status_file = now + STATUS_FILE_EVERY_S
            try:
                write_status(self._status_dir, self.status())
            except OSError as exc:
                event(_log, "status_file_failed", logging.WARNING, error=exc.strerror)
                self._status_dir = None
        if now >= self._next_status_log:
            self._next_status_log = now + self._settings.log.status_every_s
            _log.info("status %s", format_status(self.status()))


def _advice_for(faces: list[Any]) -> Message:
    """What to tell a person whose face fails the quality gate (largest face's reason)."""
    reasons = [getattr(t.face.quality, "reason", "") for t in faces]
    for reason in reasons:
        if reason in _ADVICE:
            return _ADVICE[reason]
    return Message.LOOK_AT_CAMERA


def _default_tracker(clock: Clock) -> TrackerLike:
    from dispenser.vision import FaceTracker

    tracker: TrackerLike = FaceTracker(clock=clock)
    return tracker

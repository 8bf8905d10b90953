"""Live mode: the real service, store and motor driver, frame by frame, on a simulated clock.

`dispenser simulate` (no arguments, or `--video`, `--images`, `--camera`) wires the same
parts `dispenser run` wires on the board: `DispenserService` (state machine, hold-still,
face tracker), `TemplateStore` (with its sweeper thread) and `MotorLink`, which talks over
a pseudo-terminal to `firmware_sim` (the controller firmware with a simulated motor and
roll). What differs is where frames and time come from:

- the built-in story and video/image files run on a `VirtualClock` that this driver moves
  one frame at a time (0.1 s, or 1 s while nobody is in view), paced against real time by
  a `ScaledClock` at `--speed` (at most `MAX_SPEED`): a 20-minute story is shown in
  seconds and a 3 s hold-still still takes 3 s of the machine's time;
- a live camera runs on the device clock (`BootClock`), in real time.

After each clock step the driver also calls `store.sweep()`, so deletions show up on the
step they become due (the store's own sweeper thread would do the same within
`store.sweep_period_s`); the firmware's motor moves on the same virtual clock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dispenser.clock import Clock, ScaledClock, VirtualClock
from dispenser.config import Settings
from dispenser.logsafe import event
from dispenser.service import DispenserService, Event, FrameSource, Message
from dispenser.service.frames import ScriptedSource
from dispenser.service.state import State, Transition
from dispenser.sim.image_visits import ImageVisits, Skipped
from dispenser.sim.preview import Preview
from dispenser.sim.scripted import ScriptedVisit, SyntheticCamera
from dispenser.sim.timeline import Row, clock_text

_log = logging.getLogger("dispenser.sim")

ACTIVE_FRAME_S = 0.1     # frame period while someone is in view or the machine is busy
IDLE_FRAME_S = 1.0       # ... and while nobody is there
VIDEO_STEP_S = 0.05      # virtual clock step for video files and image directories
CAMERA_POLL_S = 0.005    # real pause between steps with a live camera
BUTTON_WAIT_S = 10.0     # full frame rate for this long after a scripted button press
# Real time slept before each virtual-clock slice while the motor runs (Pacer.advance), and
# before each step while a scripted button press is on its way to the service: the
# MotorLink's reader and heartbeat threads run in it (the firmware's own pass is waited for
# with SimulatedController.settle, not slept for).
_LINK_GRACE_S = 0.002
MAX_SPEED = 1000.0        # the fastest a virtual clock runs (see Pacer)
START_S = 1000.0         # the virtual clock's origin (any value; the timeline counts from it)


class SimDisplay:
    """The display the person would read, kept for the timeline and the preview."""

    def __init__(self) -> None:
        self.message = Message.WELCOME
        self.progress: float | None = None

    def show(self, message: Message, progress: float | None = None,
             frame: np.ndarray | None = None) -> None:
        self.message, self.progress = message, progress


class WatchedPipeline:
    """Passes calls to the pipeline and remembers the last face boxes (for the preview:
    boxes only, never a template, crop or landmark set)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.boxes: list[tuple[float, float, float, float]] = []

    def detect(self, frame_bgr: np.ndarray) -> list[Any]:
        faces: list[Any] = self._inner.detect(frame_bgr)
        self.boxes = [tuple(f.box) for f in faces]
        return faces

    def embed(self, frame_bgr: np.ndarray, face: Any, out: np.ndarray) -> None:
        self._inner.embed(frame_bgr, face, out)

    def scrub(self) -> None:
        self._inner.scrub()

    def close(self) -> None:
        closer = getattr(self._inner, "close", None)
        if closer is not None:
            closer()


@dataclass
class LiveResult:
    """What a live run produced: timeline rows, the scripted outcomes, final counters."""

    rows: list[Row] = field(default_factory=list)
    outcomes: list[dict[str, str]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    stopped_early: bool = False
    skipped: list[Skipped] = field(default_factory=list)   # --images: no decision, and why


class _KeepLastFrame:
    """A frame source that remembers its newest frame (for the preview) and counts the
    frames read: sources return the same reused buffer for every frame, so a new frame is
    told by the count, not by the array's identity."""

    def __init__(self, inner: FrameSource) -> None:
        self._inner = inner
        self.last: np.ndarray | None = None
        self.reads = 0

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def finished(self) -> bool:
        return self._inner.finished

    def open(self) -> None:
        self._inner.open()

    def read(self) -> np.ndarray | None:
        frame = self._inner.read()
        if frame is not None:
            self.last = frame
            self.reads += 1
        return frame

    def close(self) -> None:
        self.last = None
        self._inner.close()


class _Machine:
    """The real parts, wired as `dispenser run` wires them, closed in reverse order."""

    def __init__(self, settings: Settings, clock: Clock, frames: FrameSource, pipeline: Any,
                 display: SimDisplay, on_transition: Callable[[Transition], None]) -> None:
        from dispenser.motor import MotorLink
        from dispenser.motor_connection import start_simulator
        from dispenser.store import TemplateStore
        from dispenser.store.rule import rule_for

        self._closers: list[Callable[[], None]] = [frames.close]
        try:
            self.simulator = start_simulator(clock)
            self._closers.append(self.simulator.stop)
            self.link = MotorLink(settings.serial, clock, port=self.simulator.device_path)
            self._closers.append(self.link.close)
            self.link.open()
            self.store = TemplateStore(settings.store, rule=rule_for(settings),
                                       clock=clock)
            self._closers.append(self.store.close)
            self.service = DispenserService(settings, clock=clock, frames=frames,
                                            store=self.store, pipeline=pipeline,
                                            motor=self.link, display=display,
                                            on_transition=on_transition)
            self._closers.append(self.service.close)
        except BaseException:
            self.close()
            raise

    def paper_mm(self) -> int:
        return int(self.simulator.paper_out_mm)

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # keep closing the rest (the store zeroises on close)
                event(_log, "close_failed", logging.WARNING, kind=type(exc).__name__)


class LiveDriver:
    """Steps one machine through a run and turns what happens into timeline rows."""

    def __init__(self, settings: Settings, clock: Clock, frames: FrameSource, pipeline: Any,
                 *, emit: Callable[[Row], None], who: Callable[[float], str] | None = None,
                 narrate_faces: bool | None = None, preview: Preview | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.display = SimDisplay()
        self.pipeline = WatchedPipeline(pipeline)
        self._emit = emit
        self._who = who or (lambda t: "face")
        # Real frames: say when faces come and go (a script announces its own visitors).
        self._narrate_faces = who is None if narrate_faces is None else narrate_faces
        self._preview = preview
        self._t0 = clock.now()
        self.result = LiveResult()
        self._served: list[tuple[str, float]] = []   # (who, taken at) of live templates
        self._deciding: tuple[str, float] | None = None
        self._deletions = 0
        self._frames = _KeepLastFrame(frames)
        self._shown = 0  # how many frames had been read when the preview last drew one
        # (time, who, outcome): "served", "denied", "failed" or "button"
        self.decisions: list[tuple[float, str, str]] = []
        self.button_who = "someone"   # who pressed the no-scan button last (for the rows)
        self.button_pressed_at: float | None = None  # a press the service has not seen yet
        self.machine = _Machine(settings, clock, self._frames, self.pipeline, self.display,
                                self._on_transition)

    # -------------------------------------------------------------------- events

    def elapsed(self) -> float:
        return self.clock.now() - self._t0

    def row(self, who: str, text: str, decision: str = "") -> None:
        r = Row(self.elapsed(), who, text, decision,
                self.machine.store.counters().occupancy, self.machine.paper_mm())
        self.result.rows.append(r)
        self._emit(r)

    def _on_transition(self, step: Transition) -> None:
        t = step.at - self._t0
        ev = step.event
        if self._narrate_faces and ev is Event.FACE_IN_VIEW:
            self.row(self._who(t), "a face comes into view: please look and hold still")
        elif self._narrate_faces and ev is Event.FACE_LEFT:
            self.row(self._who(t), "the face left before a decision")
        if ev is Event.HOLD_COMPLETE:
            self._deciding = (self._who(t), t)
        elif ev is Event.DECIDED_DISPENSE:
            who = self._deciding[0] if self._deciding else self._who(t)
            self.row(who, f"held still {self.settings.vision.hold_still_s:g} s, no match in "
                          "the deny window", "DISPENSE")
        elif ev is Event.DECIDED_DENY:
            who = self._deciding[0] if self._deciding else self._who(t)
            self.row(who, "matches a template from the deny window: nothing stored",
                     "DENY")
            self.decisions.append((t, who, "denied"))
        elif ev is Event.DISPENSE_OK and self._deciding is not None:
            self._served.append(self._deciding)
            self.row(self._deciding[0], "paper out, template kept in RAM")
            self.decisions.append((t, self._deciding[0], "served"))
        elif ev is Event.DISPENSE_FAILED:
            who = self._deciding[0] if self._deciding else self._who(t)
            self.row(who, "dispense failed: reservation rolled back", "FAULT")
            self.decisions.append((t, who, "failed"))
        elif ev is Event.BUTTON_PRESSED:
            self.button_pressed_at = None
            self.row(self.button_who, "no-scan button: short ribbon, no face processing",
                     "BUTTON")
        elif ev is Event.BUTTON_DONE:
            self.decisions.append((t, "button", "button"))
        elif ev is Event.FAULT_RAISED:
            self.row("-", f"fault: {', '.join(sorted(self.machine.service.faults))}", "FAULT")
        if step.target is State.IDLE:
            self._deciding = None

    def _note_deletions(self) -> None:
        deletions = self.machine.store.counters().deletions
        while self._deletions < deletions:
            self._deletions += 1
            who, taken = self._served.pop(0) if self._served else ("-", math.nan)
            when = f"from {clock_text(taken)} " if math.isfinite(taken) else ""
            self.row(who, f"template {when}deleted: retention "
                          f"{self.settings.store.retention_s:g} s reached")

    # ---------------------------------------------------------------------- steps

    def step(self) -> bool:
        """One service step, then the preview of the frame it read (if a new one came);
        False if the person closed the preview."""
        self.machine.service.step()
        self._note_deletions()
        frame = self._frames.last
        if self._preview is None or frame is None or self._frames.reads == self._shown:
            return True
        self._shown = self._frames.reads
        return self._preview.show(frame, self.pipeline.boxes, self.display.message,
                                  self.display.progress)

    def busy(self) -> bool:
        """Someone is being served or the motor runs (frames at full rate)."""
        svc = self.machine.service
        return svc.motor_busy or svc.state is not State.IDLE

    def finish(self) -> None:
        svc = self.machine.service
        self.result.duration_s = self.elapsed()
        store = self.machine.store.counters()
        self.result.counters = {
            "served": svc.counters.served, "denied": svc.counters.denied,
            "button_served": svc.counters.button_served,
            "decisions": svc.counters.decisions, "frames": svc.counters.frames,
            "embeddings": svc.counters.embeddings, "paper_mm": self.machine.paper_mm(),
            "store_deletions": store.deletions, "store_occupancy": store.occupancy,
            "store_evictions": store.evictions, "keys_shredded": store.keys_shredded,
        }

    def close(self) -> None:
        self.machine.close()
        if self._preview is not None:
            self._preview.close()


class Pacer:
    """Keeps a virtual clock from running more than `speed` times faster than real time.

    The ceiling `MAX_SPEED` is there for the controller: firmware_sim and the MotorLink
    heartbeat run in their own threads over a pty, and need a moment of real time per
    simulated second to exchange heartbeats and button counts."""

    def __init__(self, clock: VirtualClock, speed: float,
                 simulator: Any = None) -> None:
        self._clock = clock
        self._simulator = simulator  # the in-process firmware_sim, if the motor is one
        self._wall = ScaledClock(min(speed, MAX_SPEED), start=clock.now())
        self._never = threading.Event()
        self._stepped_at = time.monotonic()

    def advance(self, dt: float, *, motor_busy: bool) -> None:
        """Advance the virtual clock by `dt`; while the motor runs, by at least the real
        time this step took, in `dt` slices, each after a moment of real time for the pty
        threads. MotorLink bounds a dispense in real seconds (as on the board) while the
        simulated motor feeds on virtual time: on a CPU slower than the frame period (one
        vision step taking longer than `dt`) the motor would otherwise fall behind real
        time and a healthy dispense time out. Slices keep the firmware's overshoot (it
        stops at its first loop pass past the target) to one slice's feed: before each
        slice the simulated firmware is given the time to see the previous one."""
        if not motor_busy:
            self._clock.advance(dt)
            return
        behind = time.monotonic() - self._stepped_at
        while True:
            time.sleep(_LINK_GRACE_S)
            if self._simulator is not None:
                self._simulator.settle()
            self._clock.advance(dt)
            behind -= dt
            if behind <= 0.0:
                return

    def wait(self) -> None:
        self._wall.sleep_until(self._clock.now(), self._never)
        self._stepped_at = time.monotonic()


def run_scripted(settings: Settings, script: list[ScriptedVisit], vision: Any, end_s: float,
                 *, speed: float, emit: Callable[[Row], None],
                 progress: Callable[[float, float], None] | None = None,
                 preview: Preview | None = None, stop: threading.Event | None = None,
                 ) -> LiveResult:
    """The built-in story: scripted visitors in front of a synthetic camera."""
    clock = VirtualClock(start=START_S)
    story = _Story(script)
    source = ScriptedSource("synthetic camera (scripted visitors)")
    driver = LiveDriver(settings, clock, source, vision, emit=emit, who=story.who,
                        preview=preview)
    pacer = Pacer(clock, speed, driver.machine.simulator)
    stop = stop or threading.Event()
    try:
        while not stop.is_set() and (t := driver.elapsed()) < end_s:
            story.play_until(driver, t)
            source.push(story.camera.frame(t))
            if not driver.step():
                driver.result.stopped_early = True
                break
            if progress is not None:
                progress(t, end_s)
            button_on_its_way = story.button_on_its_way(driver, t)
            busy = driver.busy() or button_on_its_way or story.anyone_near(t)
            _pace(driver, pacer, ACTIVE_FRAME_S if busy else IDLE_FRAME_S,
                  button_on_its_way=button_on_its_way)
        driver.result.stopped_early |= stop.is_set()
        driver.finish()
        driver.result.outcomes = _outcomes(script, driver.decisions, settings)
    finally:
        driver.close()
    return driver.result


class _Story:
    """Where the scripted visitors are: who steps up, who is in view, who walks away."""

    def __init__(self, script: list[ScriptedVisit]) -> None:
        self.script = script
        self.camera = SyntheticCamera(script)
        self._pending = sorted(range(len(script)), key=lambda i: script[i].at_s)
        self._in_view: set[int] = set()

    def who(self, t: float) -> str:
        """The visitor in front of the camera at `t` ("-" for nobody)."""
        visible = self.camera.visible(t)
        return self.script[visible[0]].who if visible else "-"

    def play_until(self, driver: LiveDriver, t: float) -> None:
        """Everyone due by `t` steps up (or presses the button); whoever left walks away."""
        while self._pending and self.script[self._pending[0]].at_s <= t:
            _arrive(driver, self.script[self._pending.pop(0)])
        current = set(self.camera.visible(t))
        for i in sorted(self._in_view - current):
            driver.row(self.script[i].who, "walks away")
        self._in_view = current

    def anyone_near(self, t: float) -> bool:
        """Someone is in view, or the next visitor is due within one idle frame."""
        return bool(self.camera.visible(t)) or bool(
            self._pending and self.script[self._pending[0]].at_s - t < IDLE_FRAME_S)

    @staticmethod
    def button_on_its_way(driver: LiveDriver, t: float) -> bool:
        """A scripted button press was made recently and the service has not seen it."""
        return (driver.button_pressed_at is not None
                and t - driver.button_pressed_at < BUTTON_WAIT_S)


def _pace(driver: LiveDriver, pacer: Pacer, dt: float, *,
          button_on_its_way: bool = False) -> None:
    """Move the virtual clock on by `dt` at the paced speed, sweeping the store as its
    sweeper thread would."""
    motor_busy = driver.machine.service.motor_busy
    if button_on_its_way and not motor_busy:
        time.sleep(_LINK_GRACE_S)
    pacer.advance(dt, motor_busy=motor_busy)
    driver.machine.store.sweep()
    pacer.wait()


def _arrive(driver: LiveDriver, visit: ScriptedVisit) -> None:
    if visit.button:
        driver.button_who = visit.who
        driver.button_pressed_at = driver.elapsed()
        driver.row(visit.who, visit.note)
        driver.machine.simulator.press_button()
    else:
        driver.row(visit.who, f"steps up: {visit.note}")


def _outcomes(script: list[ScriptedVisit], decisions: list[tuple[float, str, str]],
              settings: Settings) -> list[dict[str, str]]:
    """What the machine did for each scripted visit, next to what it should have done."""
    slack = settings.display.message_s + 10.0
    unused = list(decisions)
    outcomes = []
    for visit in script:
        who = "button" if visit.button else visit.who
        match = next((d for d in unused if d[1] == who
                      and visit.at_s <= d[0] <= visit.at_s + visit.stay_s + slack), None)
        if match is not None:
            unused.remove(match)
        outcomes.append({"who": visit.who, "at": f"{visit.at_s:.0f}", "expected": visit.expect,
                         "observed": match[2] if match else "nothing"})
    return outcomes


def run_frames(settings: Settings, frames: FrameSource, pipeline: Any, clock: Clock, *,
               speed: float, emit: Callable[[Row], None],
               progress: Callable[[float, float], None] | None = None,
               preview: Preview | None = None, stop: threading.Event | None = None,
               max_s: float | None = None) -> LiveResult:
    """Real frames through the real vision pipeline: a video file or images on a virtual
    clock (one step per frame period), or a live camera on the device clock. Images come
    as `ImageVisits`, one visit each, paced by what the service does."""
    visits = frames if isinstance(frames, ImageVisits) else None
    driver = LiveDriver(settings, clock, frames, pipeline, emit=emit, preview=preview,
                        who=None if visits is None else (lambda t: visits.label),
                        narrate_faces=True)
    virtual = clock if isinstance(clock, VirtualClock) else None
    pacer = (Pacer(virtual, speed, driver.machine.simulator) if virtual is not None
             else None)
    stop = stop or threading.Event()
    try:
        if visits is not None:
            _narrate(driver, visits)      # the first image, before its face is seen
        while not stop.is_set():
            if not driver.step():
                driver.result.stopped_early = True
                break
            if visits is not None:
                _pace_visit(driver, visits)
            t = driver.elapsed()
            if progress is not None and max_s is not None:
                progress(t, max_s)
            if driver.machine.service.finished or (max_s is not None and t >= max_s):
                break
            if pacer is not None:
                _pace(driver, pacer, VIDEO_STEP_S)
            else:
                clock.sleep_until(clock.now() + CAMERA_POLL_S, stop)
        driver.result.stopped_early |= stop.is_set()
        if virtual is not None and pacer is not None and not driver.result.stopped_early:
            _until_forgotten(driver, virtual, pacer, stop)
        driver.finish()
    finally:
        driver.close()
    if visits is not None:
        driver.result.skipped = list(visits.skipped)
    return driver.result


def _pace_visit(driver: LiveDriver, visits: ImageVisits) -> None:
    """Move `--images` on to the next visitor once this one's visit is over."""
    svc = driver.machine.service
    visits.pace(driver.clock.now(), decisions=svc.counters.decisions,
                busy=svc.motor_busy or svc.state not in (State.IDLE, State.FACE_SEEN,
                                                         State.FAULT))
    _narrate(driver, visits)


def _narrate(driver: LiveDriver, visits: ImageVisits) -> None:
    for who, text in visits.take_notes():
        driver.row(who, text)


def _until_forgotten(driver: LiveDriver, clock: VirtualClock, pacer: Pacer,
                     stop: threading.Event) -> None:
    """After the last frame, let the machine idle until retention has deleted every
    template (bounded by the retention limit), so the run ends with an empty store."""
    store = driver.machine.store
    deadline = clock.now() + driver.settings.store.retention_s + IDLE_FRAME_S
    while store.counters().occupancy > 0 and clock.now() < deadline and not stop.is_set():
        clock.advance(IDLE_FRAME_S)
        store.sweep()
        driver.step()
        pacer.wait()

"""Crowd mode: hours of visitors through the real template store, in seconds of wall time.

What runs for real: `dispenser.store.TemplateStore` (matching, deny window, retention
deletion, eviction, key shredding) on a `VirtualClock`, and the service's no-scan
`ButtonGate`. What is modelled here, per visit, instead of running the frame-by-frame
service: one machine serving one visitor at a time (a FIFO queue that people leave when
the wait exceeds their patience), a visit lasting hold-still + ribbon feed + result
message, the decision taken at the end of the hold-still, commit when the ribbon is out,
rollback when the roll is empty, and the paper roll as a counter. Templates come from
`dispenser.sim.identities` (synthetic, fitted to a measured similarity table, tail
included).

Because the simulator knows who every visitor really is, it can score each decision:

- served:          the full ribbon, and the person had not been served within the deny
                   window;
- short ribbon:    the shorter ribbon (best match between the rule's "likely" and
                   "certain" thresholds) to a person not served within the deny window;
- repeat blocked:  denied, and the person *had* been served within the deny window;
- false denial:    denied, but the person had not been served within the deny window:
                   someone else's template matched them (a stranger wrongly refused).
                   Beside the count (and the short ribbons'), each run adds up what the
                   similarity table predicts for the same decisions, 1 - (1 - f)^N at the
                   live count N and thresholds each one met, and what the synthetic
                   people's own pairwise share f predicts (`SampledTail`), so the three
                   can be compared;
- repeat shortened: the shorter ribbon to a person served within the deny window;
- false admit:     the full ribbon to a person served within the deny window (their own
                   template was not recognised, or was evicted from a full store).

The configured run decides with the configured rule (`dispenser.store.rule.rule_for`:
thresholds that follow the live count, and the short-ribbon band); the sweep runs use one
fixed threshold each, without a band. The same crowd (arrivals and templates) is replayed
for every run, so differences between runs come from the settings only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from dispenser.clock import VirtualClock
from dispenser.config import Settings
from dispenser.service.button import ButtonGate
from dispenser.sim.identities import (
    IdentityModel,
    Population,
    SampledSimilarities,
    SampledTail,
    sample_similarities,
    sampled_tail,
)
from dispenser.sim.scenario import Scenario, ScenarioError
from dispenser.sim.similarity import SimilarityTable
from dispenser.store import TemplateStore
from dispenser.store.rule import MatchRule, rule_for

# The simulated controller's nominal feed speed (firmware_sim.plant.NOMINAL_MM_S).
FEED_MM_PER_S = 150.0
# Occupancy is sampled this often for the plots (simulated seconds).
SAMPLE_EVERY_S = 10.0
_STORE_LOGGER = "dispenser.store"


class Kind(enum.IntEnum):
    """Who a visit is."""

    VISITOR = 0      # first visit of a member of the public
    REPEAT = 1       # the same person coming back for more
    STAFF = 2        # a cleaner or attendant passing in front of the camera


@dataclass(frozen=True)
class Crowd:
    """Every visit of one simulated period, in arrival order (parallel arrays)."""

    arrival_s: np.ndarray     # float64, seconds from the start
    person: np.ndarray        # int64, population index (staff first, then visitors)
    kind: np.ndarray          # int8, Kind
    button: np.ndarray        # bool, uses the no-scan button instead of the face
    templates: np.ndarray     # float32 (visits, dim); rows of button visits are unused
    duration_s: float

    def __len__(self) -> int:
        return len(self.arrival_s)


def generate_crowd(scenario: Scenario, model: IdentityModel, seed: int) -> Crowd:
    """Draw the scenario's visits (deterministic in `seed`)."""
    rng = np.random.default_rng([seed, 0xC0])
    duration = scenario.duration_min * 60.0
    times: list[float] = []
    people: list[int] = []
    kinds: list[int] = []
    # Staff are people 0..staff-1: each passes about every staff_every_min (+-30%).
    every = scenario.staff_every_min * 60.0
    for member in range(scenario.staff):
        t = rng.uniform(0.0, every)
        while t < duration:
            times.append(t)
            people.append(member)
            kinds.append(Kind.STAFF)
            t += every * rng.uniform(0.7, 1.3)
    # Members of the public: Poisson arrivals; some come back for more.
    rate = scenario.arrivals_per_hour / 3600.0
    lo, hi = (m * 60.0 for m in scenario.repeat_after_min)
    t, person = 0.0, scenario.staff
    while rate > 0:
        t += rng.exponential(1.0 / rate)
        if t >= duration:
            break
        times.append(t)
        people.append(person)
        kinds.append(Kind.VISITOR)
        if rng.random() < scenario.repeat_share:
            back = t
            for _ in range(scenario.repeat_times):
                back += rng.uniform(lo, hi)
                if back >= duration:
                    break
                times.append(back)
                people.append(person)
                kinds.append(Kind.REPEAT)
        person += 1
    order = np.argsort(np.asarray(times), kind="stable")
    arrival = np.asarray(times, dtype=np.float64)[order]
    who = np.asarray(people, dtype=np.int64)[order]
    kind = np.asarray(kinds, dtype=np.int8)[order]
    button = (rng.random(len(arrival)) < scenario.button_share) & (kind != Kind.STAFF)
    population = Population(model, seed)
    templates = population.templates(who, np.random.default_rng([seed, 0x7E]))
    return Crowd(arrival, who, kind, button, templates, duration)


@dataclass(frozen=True)
class RunSettings:
    """The settings one crowd run uses: a fixed threshold (one point of the sweep) or
    None for the configured rule."""

    threshold: float | None
    deny_window_s: float


@dataclass
class RunResult:
    """Counts and times of one run; only numbers, no templates."""

    threshold: float | None            # None: the configured rule
    deny_window_s: float
    visits: int = 0
    face_visits: int = 0
    served: int = 0
    short_ribbons: int = 0             # strangers given the shorter ribbon
    repeat_blocked: int = 0
    repeat_shortened: int = 0          # repeat-takers in the window given the shorter ribbon
    false_denials: int = 0
    expected_false_denials: float = 0.0  # from the table's pairwise rate, same decisions
    expected_short_ribbons: float = 0.0  # ... and for the shorter ribbon
    model_false_denials: float = 0.0     # from the synthetic people's pairwise rate
    model_short_ribbons: float = 0.0
    false_admits: int = 0
    certain_range: tuple[float, float] | None = None  # refusal thresholds the decisions met
    staff_served: int = 0
    staff_denied: int = 0
    button_served: int = 0
    button_refused: int = 0
    no_paper: int = 0                  # visits cut short or refused by an empty roll
    gave_up: int = 0                   # left because the queue was longer than their patience
    paper_mm: int = 0
    free_paper_mm: int = 0             # what a free dispenser would have given out
    roll_empty_at_s: float | None = None
    free_roll_empty_at_s: float | None = None
    evictions: int = 0
    deletions: int = 0
    peak_occupancy: int = 0
    wait_mean_s: float = 0.0
    wait_max_s: float = 0.0
    occupancy: list[tuple[float, int]] = field(default_factory=list)
    paper_timeline: list[tuple[float, int, int]] = field(default_factory=list)

    @property
    def paper_saved(self) -> float:
        """Share of the free dispenser's paper this machine did not give out."""
        return 1.0 - self.paper_mm / self.free_paper_mm if self.free_paper_mm else 0.0

    @property
    def false_denial_rate(self) -> float:
        """False denials per face visit of someone not served within the deny window."""
        eligible = self.served + self.short_ribbons + self.false_denials + self.staff_served
        return self.false_denials / eligible if eligible else 0.0

    @property
    def repeat_block_rate(self) -> float:
        """Share of repeat attempts inside the deny window that were refused."""
        repeats = self.repeat_blocked + self.repeat_shortened + self.false_admits
        return self.repeat_blocked / repeats if repeats else 0.0


class _Machine:
    """One simulated dispenser: the real store, the real button gate, a paper counter, how
    long each part of a visit keeps it busy, and the similarity table the crowd was drawn
    from and the crowd's own sampled tail (to add up what each predicts), if given."""

    def __init__(self, settings: Settings, run: RunSettings, scenario: Scenario,
                 clock: VirtualClock, table: SimilarityTable | None,
                 sampled: SampledTail | None) -> None:
        store_settings = dataclasses.replace(settings.store, deny_window_s=run.deny_window_s)
        self.clock = clock
        self.rule = (rule_for(settings) if run.threshold is None
                     else MatchRule.fixed(run.threshold))
        self.store = TemplateStore(store_settings, rule=self.rule, clock=clock,
                                   start_sweeper=False, zeroise_on_signals=False)
        self.deny_window_s = run.deny_window_s
        self.table = table
        self.sampled = sampled
        self.button = ButtonGate(settings.dispense.button_min_interval_s)
        self.roll_mm = int(scenario.roll_m * 1000)
        self.ribbon_mm = settings.dispense.ribbon_mm
        self.short_mm = settings.dispense.short_ribbon_mm
        self.button_mm = settings.dispense.button_ribbon_mm
        self.hold_s = settings.vision.hold_still_s
        self.message_s = settings.display.message_s
        self.button_s = self.button_mm / FEED_MM_PER_S

    def feed(self, length_mm: int) -> int:
        """Run the motor for one ribbon; returns the mm that came out (less than asked when
        the roll ran out mid-ribbon, which the controller reports as paper_empty)."""
        out = min(length_mm, self.roll_mm)
        self.roll_mm -= out
        return out


@contextlib.contextmanager
def _store_log_quiet() -> Iterator[None]:
    """Thousands of admits would flood the log: the store logs warnings only meanwhile."""
    store_log = logging.getLogger(_STORE_LOGGER)
    previous_level = store_log.level
    store_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        store_log.setLevel(previous_level)


def run_crowd(crowd: Crowd, scenario: Scenario, settings: Settings,
              run: RunSettings, table: SimilarityTable | None = None,
              sampled: SampledTail | None = None) -> RunResult:
    """Replay `crowd` through a fresh store with `run`'s settings; score every decision
    (and, given the `table` the crowd was drawn from and the crowd's `sampled` tail,
    what each predicts for them).

    Visitors queue for the one machine and leave when the wait outlasts their patience;
    a free dispenser (one ribbon for everybody) is counted alongside for comparison."""
    machine = _Machine(settings, run, scenario, VirtualClock(start=0.0), table, sampled)
    result = RunResult(threshold=run.threshold, deny_window_s=run.deny_window_s,
                       visits=len(crowd))
    last_served: dict[int, float] = {}
    free_roll_mm = machine.roll_mm
    machine_free_at = next_sample = 0.0
    waits: list[float] = []
    with _store_log_quiet(), contextlib.closing(machine.store):
        for i in range(len(crowd)):
            arrival = float(crowd.arrival_s[i])
            start = max(arrival, machine_free_at)
            result.free_paper_mm += machine.ribbon_mm
            if result.free_roll_empty_at_s is None and result.free_paper_mm > free_roll_mm:
                result.free_roll_empty_at_s = arrival
            if start - arrival > scenario.patience_s:
                result.gave_up += 1
                continue
            next_sample = _sample_until(machine, result, next_sample, start)
            waits.append(start - arrival)
            machine_free_at = _visit(machine, result, crowd, i, start, last_served)
            result.paper_timeline.append((arrival, result.paper_mm, result.free_paper_mm))
        # Keep sampling after the last arrival until retention has emptied the store.
        _sample_until(machine, result, next_sample,
                      max(crowd.duration_s, machine_free_at) + settings.store.retention_s
                      + SAMPLE_EVERY_S)
        counters = machine.store.counters()
        result.evictions = counters.evictions
        result.deletions = counters.deletions
    if waits:
        result.wait_mean_s = float(np.mean(waits))
        result.wait_max_s = float(np.max(waits))
    return result


def _visit(machine: _Machine, result: RunResult, crowd: Crowd, i: int, start: float,
           last_served: dict[int, float]) -> float:
    """Visitor `i` steps up to the machine at `start`; returns when it is free again."""
    if crowd.button[i]:
        machine.clock.set(start)
        return start + _button_visit(machine, result)
    result.face_visits += 1
    decide_at = start + machine.hold_s
    machine.clock.set(decide_at)
    return decide_at + _face_visit(machine, result, crowd, i, last_served) + machine.message_s


def _sample_until(machine: _Machine, result: RunResult, next_sample: float,
                  until: float) -> float:
    """Sweep and record occupancy at every sample time up to `until` (the store's sweeper
    would have run there even with nobody in front of the machine)."""
    while next_sample <= until:
        machine.clock.set(max(next_sample, machine.clock.now()))
        machine.store.sweep()
        occupancy = machine.store.counters().occupancy
        result.occupancy.append((next_sample, occupancy))
        result.peak_occupancy = max(result.peak_occupancy, occupancy)
        next_sample += SAMPLE_EVERY_S
    return next_sample


def _button_visit(machine: _Machine, result: RunResult) -> float:
    """A no-scan press: no face processing at all. Returns how long the machine is busy."""
    if not machine.button.allow(machine.clock.now()):
        result.button_refused += 1
        return 0.0
    if machine.roll_mm <= 0:
        result.no_paper += 1
        return 0.0
    out = machine.feed(machine.button_mm)
    result.paper_mm += out
    if out < machine.button_mm:
        machine.button.refund()
        _roll_empty(machine, result)
        return machine.button_s
    result.button_served += 1
    return machine.button_s


def _face_visit(machine: _Machine, result: RunResult, crowd: Crowd, i: int,
                last_served: dict[int, float]) -> float:
    """Hold-still is over (clock = decision time): decide, feed, commit or roll back.
    Returns how long the decision and the ribbon keep the machine busy after it."""
    now = machine.clock.now()
    if machine.roll_mm <= 0:
        # An empty machine shows "out of paper" and decides nothing (the service's FAULT).
        result.no_paper += 1
        return 0.0
    person = int(crowd.person[i])
    staff = crowd.kind[i] == Kind.STAFF
    served_at = last_served.get(person)
    should_deny = served_at is not None and now - served_at < machine.deny_window_s
    decision = machine.store.decide(crowd.templates[i].copy())
    if not (should_deny or staff):
        _predict(machine, decision.live_count, result)
    _note_threshold(machine.rule, decision.live_count, result)
    occupancy = machine.store.counters().occupancy
    result.peak_occupancy = max(result.peak_occupancy, occupancy)
    if not decision.dispense:
        if staff:
            result.staff_denied += 1
        elif should_deny:
            result.repeat_blocked += 1
        else:
            result.false_denials += 1
        return 0.0
    reservation = decision.reservation
    assert reservation is not None  # the store's contract: set iff dispense
    length = machine.short_mm if decision.short else machine.ribbon_mm
    ribbon_s = length / FEED_MM_PER_S
    machine.clock.set(now + ribbon_s)
    out = machine.feed(length)
    result.paper_mm += out
    if out < length:
        # paper_empty: the service rolls back, so this person is not denied next time.
        machine.store.rollback(reservation)
        _roll_empty(machine, result)
        return ribbon_s
    machine.store.commit(reservation)
    last_served[person] = machine.clock.now()
    if staff:
        result.staff_served += 1
    elif should_deny:
        if decision.short:
            result.repeat_shortened += 1
        else:
            result.false_admits += 1
    elif decision.short:
        result.short_ribbons += 1
    else:
        result.served += 1
    return ribbon_s


def _note_threshold(rule: MatchRule, live: int, result: RunResult) -> None:
    """Record the refusal threshold this decision met."""
    certain = rule.certain(live)
    low, high = result.certain_range or (certain, certain)
    result.certain_range = (min(low, certain), max(high, certain))


def _predict(machine: _Machine, live: int, result: RunResult) -> None:
    """For a stranger's decision, what the table and the crowd's sampled tail predict
    (`_refused_and_short`)."""
    if not live:
        return
    likely, certain = machine.rule.thresholds(live)
    if machine.table is not None:
        refused, short = _refused_and_short(machine.table, likely, certain, live)
        result.expected_false_denials += refused
        result.expected_short_ribbons += short
    if machine.sampled is not None:
        refused, short = _refused_and_short(machine.sampled, likely, certain, live)
        result.model_false_denials += refused
        result.model_short_ribbons += short


def _refused_and_short(predictor: SimilarityTable | SampledTail, likely: float,
                       certain: float, live: int) -> tuple[float, float]:
    """(chance of a refusal, of the shorter ribbon): 1 - (1 - f(certain))^N, and the same
    at `likely` minus that."""
    refused = predictor.per_visit_wrongful_refusal(certain, live)
    return refused, predictor.per_visit_wrongful_refusal(likely, live) - refused


def _roll_empty(machine: _Machine, result: RunResult) -> None:
    """The ribbon stopped short: this visit got no (full) ribbon, the roll is empty."""
    result.no_paper += 1
    if result.roll_empty_at_s is None:
        result.roll_empty_at_s = machine.clock.now()


# Without thresholds in the scenario, the sweep tries the cosines at which this share of the
# table's impostor pairs matches: from a loose 1 in 100 to the 1 in 100,000 a crowd of 60
# needs for a 0.1 % chance per visit of refusing a stranger.
SWEEP_SHARES = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


def sweep_points(scenario: Scenario, table: SimilarityTable) -> list[RunSettings]:
    """Every (threshold, deny window) pair of the scenario's sweep, in a fixed order."""
    thresholds = scenario.sweep.thresholds or tuple(sorted({
        round(float(table.impostor.quantile(1.0 - share)), 3) for share in SWEEP_SHARES}))
    return [RunSettings(threshold=t, deny_window_s=w)
            for w in scenario.sweep.deny_windows_s for t in thresholds]


@dataclass(frozen=True)
class CrowdReport:
    """Everything one scenario study produced (what dispenser.sim.report renders)."""

    scenario: Scenario
    seed: int
    settings: Settings
    table: SimilarityTable
    model: IdentityModel
    crowd: Crowd
    runs: list[RunResult]
    configured: RunResult
    sampled: SampledSimilarities  # synthetic similarities, for the histogram and checks


SIMILARITY_SAMPLE_PAIRS = 5000
# Fresh people whose all pairs (4.5 million) give the crowd's own impostor tail: about
# 150 pairs at a 3e-5 share, where the shipped rule refuses at 20 live templates.
TAIL_PEOPLE = 3000


def study(scenario: Scenario, settings: Settings, table: SimilarityTable, seed: int,
          progress: Callable[[int, int], None] | None = None) -> CrowdReport:
    """Generate the scenario's crowd once, replay it for the configured settings and every
    sweep point; `progress(done, total)` is called after each run."""
    retention = settings.store.retention_s
    too_long = [w for w in scenario.sweep.deny_windows_s if w > retention]
    if too_long:
        raise ScenarioError(f"sweep: deny window {too_long[0]:g} s exceeds the configured "
                            f"store.retention_s = {retention:g} (a deny window never "
                            "outlasts retention)")
    model = IdentityModel.fit(table)
    crowd = generate_crowd(scenario, model, seed)
    configured_point = RunSettings(None, settings.store.deny_window_s)
    points = sweep_points(scenario, table)
    todo = [configured_point, *points]
    results: dict[RunSettings, RunResult] = {}
    tail = sampled_tail(Population(model, seed), TAIL_PEOPLE,
                        np.random.default_rng([seed, 0x7A]))
    for done, point in enumerate(todo, start=1):
        results[point] = run_crowd(crowd, scenario, settings, point, table, tail)
        if progress is not None:
            progress(done, len(todo))
    sampled = sample_similarities(
        Population(model, seed), SIMILARITY_SAMPLE_PAIRS, np.random.default_rng([seed, 0x51]))
    return CrowdReport(scenario=scenario, seed=seed, settings=settings, table=table,
                       model=model, crowd=crowd, runs=[results[p] for p in points],
                       configured=results[configured_point], sampled=sampled)

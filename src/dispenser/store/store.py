"""The ephemeral template store: who was served within the deny window, held in RAM only.

Layout. One preallocated ring of `capacity` slots, as parallel numpy arrays (no Python
list or dict ever holds a template):

    rows[i]      the template sealed under its epoch key (float32, `padded_dim` values:
                 dim rounded up to a power of two, see dispenser.store.transform)
    state[i]     FREE / RESERVED / LIVE
    born[i]      when the template entered the store (decide time): retention runs from here
    served[i]    when the paper went out (commit time): the deny window runs from here
    seq[i]       admission order, to evict the oldest when full
    slot_key[i]  which epoch key sealed row i
    generation[i] bumped whenever slot i is freed, so a stale Reservation is refused

Decisions. A probe is compared with the LIVE entries served less than `deny_window_s` ago;
how many there are is the *live count*. The injected rule (`dispenser.store.rule`) turns the
live count into two thresholds, and the best similarity b among those entries decides:
b >= certain refuses (DENY: nothing stored), likely <= b < certain gives the shorter ribbon
(SHORT), anything else the full ribbon (DISPENSE). SHORT and DISPENSE both reserve a slot for
the probe, so a repeat within the window is refused either way. With no entry in the window
b is -inf: an entry at or past the deny window can never cause a refusal.

Lifetimes. Retention counts from `born`, so a template's bytes exist at most
`retention + sweep_period` after they were first written, whatever happens to the
reservation. The deny window counts from `served` (a person's wait starts when they got
paper, and a denied attempt never refreshes it). Every public operation first deletes what
is due at `now`, and a sweeper thread does the same every `sweep_period_s` on the injected
clock even when nobody comes.

Locking. One `threading.Lock` guards every array and counter; `decide`, `commit`,
`rollback`, `preload`, `sweep`, `counters` and `close` each hold it for their whole
duration, so they are linearizable. The numba kernels release the GIL while the lock is
held: other Python threads (camera, motor) keep running during a search; only store
operations wait. The signal handler (`exit_hooks`) is the one writer that does not take
the lock, because the thread it interrupts may hold it; it only writes zeros and sets
`_closed`, and every operation re-zeroises before returning if it finds the store closed.

Memory. The template rows, the sealed-probe scratch and the keys are locked against swap
(`mlock`, where RLIMIT_MEMLOCK allows; see dispenser.privacy.memory) and unlocked only after
they have been zeroised.

Copies. The caller's probe is zeroised after use unless `keep_probe=True`; the probe
sealed under each live key goes into a preallocated scratch array that the matching
kernel zeroises before it returns. `close()`, garbage collection, interpreter exit
(`weakref.finalize`) and SIGTERM/SIGINT (`exit_hooks`) overwrite every buffer, keys
included.

Inspection. Auditors and benchmarks read the raw arrays through `raw_buffers()` (read-only
views) and fill a store in O(n) with `preload()`; nothing outside this module touches the
private buffers.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import weakref
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import numpy as np

from dispenser.clock import Clock
from dispenser.config import StoreSettings
from dispenser.embedders import TEMPLATE_DIM
from dispenser.errors import DispenserError
from dispenser.logsafe import event
from dispenser.privacy.memory import locked_buffer, unlock_pages
from dispenser.store import exit_hooks, kernels
from dispenser.store.keys import EpochKeys, key_slots_needed
from dispenser.store.rule import ThresholdRule, is_match

_log = logging.getLogger("dispenser.store")

# A probe whose squared norm is further than this from 1 is refused as not L2-normalised.
_NORM_TOLERANCE = 1e-3
# Longest real-time wait for the sweeper thread to stop in close().
_JOIN_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Reservation:
    """A slot holding a dispensed-to template until the paper is confirmed (or not)."""

    slot: int
    generation: int


class Verdict(enum.Enum):
    """What a decision gives the person (the value names it in logs and JSON)."""

    DISPENSE = "dispense"  # the full ribbon
    SHORT = "short"        # the shorter ribbon: close to, not surely, someone in the window
    DENY = "deny"          # surely served within the deny window: nothing


@dataclass(frozen=True)
class Decision:
    """The outcome of `decide`. Holds no template data."""

    verdict: Verdict
    reservation: Reservation | None  # set for DISPENSE and SHORT
    best_similarity: float | None  # for simulator statistics; None when nobody to compare
    live_count: int  # entries in the deny window the probe was compared with

    @property
    def dispense(self) -> bool:
        """Paper goes out (full or short ribbon) and a slot is reserved."""
        return self.verdict is not Verdict.DENY

    @property
    def short(self) -> bool:
        return self.verdict is Verdict.SHORT


@dataclass(frozen=True)
class StoreCounters:
    """Event counts since the store was created; no personal data, ints only."""

    decisions: int
    denials: int
    shorts: int  # decisions in the shorter-ribbon band (also counted in admits)
    admits: int
    commits: int
    rollbacks: int  # explicit rollbacks plus reservations that timed out
    timeouts: int  # reservations rolled back because nobody resolved them in time
    sweeps: int
    deletions: int  # entries zeroised because they reached the retention age
    evictions: int
    occupancy: int  # reserved + live slots right now
    keys_live: int
    keys_shredded: int


@dataclass(frozen=True)
class RawBuffers:
    """Read-only views of every array the store owns, for auditors and benchmarks.

    This is what a memory dump of the store would show, so the audit checks zeroisation
    here rather than through the API. Row i holds the template sealed under its epoch key
    (`keys[slot_key[i]]`, see dispenser.store.keys). The views follow the live arrays (a
    later sweep shows through) but refuse writes. They are read without the store's lock:
    look at them between store operations, not during one.
    """

    rows: np.ndarray  # (capacity, padded dim) float32: each template, sealed by its key
    state: np.ndarray  # (capacity,) int8: FREE / RESERVED / LIVE (dispenser.store.kernels)
    born: np.ndarray  # (capacity,) float64: admission time, retention runs from here
    served: np.ndarray  # (capacity,) float64: commit time, the deny window runs from here
    seq: np.ndarray  # (capacity,) int64: admission order
    slot_key: np.ndarray  # (capacity,) int32: index into `keys` of the row's key, -1 if none
    rotated: np.ndarray  # (key slots, padded dim) float32: the probe sealed under each key
    scratch: np.ndarray  # (3, padded dim) float32: the transform's other buffers
    keys: np.ndarray  # (key slots, rounds + 1, padded dim) float32: the epoch keys
    key_epoch: np.ndarray  # (key slots,) int64: which epoch each key belongs to, -1 if none
    key_refs: np.ndarray  # (key slots,) int32: rows stored under each key
    key_scratch: np.ndarray  # where a key is generated (zeros between generations)


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


class _Buffers:
    """Every array the store owns. Holds no reference to the store, so a finalizer can
    zeroise it after the store itself is gone."""

    def __init__(self, capacity: int, keys: EpochKeys) -> None:
        self.rows = locked_buffer((capacity, keys.padded_dim), np.float32)
        self.state = np.zeros(capacity, dtype=np.int8)
        self.born = np.zeros(capacity, dtype=np.float64)
        self.served = np.zeros(capacity, dtype=np.float64)
        self.seq = np.zeros(capacity, dtype=np.int64)
        self.slot_key = np.full(capacity, -1, dtype=np.int32)
        self.generation = np.zeros(capacity, dtype=np.int64)
        # rotated[k]: the probe sealed under key k during a decision; scratch: the
        # transform's other buffers (kernels.seal_probe_per_key).
        self.rotated = locked_buffer((keys.keys.shape[0], keys.padded_dim), np.float32)
        self.scratch = locked_buffer((3, keys.padded_dim), np.float32)
        self.keys = keys

    def zeroise(self) -> None:
        """Overwrite every template, timestamp, sealed probe and key with zeros."""
        self.rows.fill(0.0)
        self.born.fill(0.0)
        self.served.fill(0.0)
        self.seq.fill(0)
        self.slot_key.fill(-1)
        self.state.fill(kernels.FREE)
        self.rotated.fill(0.0)
        self.scratch.fill(0.0)
        self.keys.zeroise()

    def release(self) -> None:
        """Zeroise, then drop the swap locks: the last thing done before the memory goes."""
        self.zeroise()
        unlock_pages(self.rows)
        unlock_pages(self.rotated)
        unlock_pages(self.scratch)
        self.keys.unlock()

    def read_only(self) -> RawBuffers:
        """Read-only views of every array (see RawBuffers)."""
        k = self.keys
        return RawBuffers(
            rows=_read_only(self.rows), state=_read_only(self.state),
            born=_read_only(self.born), served=_read_only(self.served),
            seq=_read_only(self.seq), slot_key=_read_only(self.slot_key),
            rotated=_read_only(self.rotated), scratch=_read_only(self.scratch),
            keys=_read_only(k.keys), key_epoch=_read_only(k.epoch),
            key_refs=_read_only(k.refs), key_scratch=_read_only(k.scratch))

    def clear(self, slot: int) -> None:
        """Zeroise one slot and free it."""
        kernels.clear_slot(slot, self.rows, self.state, self.born, self.served, self.seq,
                           self.slot_key, self.keys.refs, self.generation)


@dataclass
class _Counts:
    decisions: int = 0
    denials: int = 0
    shorts: int = 0
    admits: int = 0
    commits: int = 0
    rollbacks: int = 0
    timeouts: int = 0
    sweeps: int = 0
    deletions: int = 0
    evictions: int = 0


def _wipe(probe: object) -> None:
    if isinstance(probe, np.ndarray) and probe.flags.writeable:
        probe.fill(0)


class TemplateStore:
    """Fixed-capacity, RAM-only store of recently served templates (see module docstring).

    `rule` turns the live count into the (likely, certain) thresholds of each decision:
    `dispenser.store.rule.rule_for(settings)` on the device, `MatchRule.fixed(t)` where
    the live count must not matter (tests, simulator sweeps). `start_sweeper` runs the
    deletion timer thread (tests may drive `sweep()` by hand);
    `zeroise_on_signals` installs the SIGTERM/SIGINT handlers of `exit_hooks` (main thread
    only; they chain to whatever was installed before).
    """

    def __init__(self, settings: StoreSettings, *, rule: ThresholdRule, dim: int = TEMPLATE_DIM,
                 clock: Clock, start_sweeper: bool = True,
                 zeroise_on_signals: bool = True) -> None:
        if dim < 1:
            raise DispenserError(f"store: template dimension {dim} must be positive")
        self.settings = settings
        self.rule = rule
        self.dim = dim
        self._clock = clock
        self._lock = threading.Lock()
        keys = EpochKeys(dim, key_slots_needed(settings.retention_s, settings.key_epoch_s),
                         settings.key_epoch_s)
        self._buf = _Buffers(settings.capacity, keys)
        self._keys = keys
        self._counts = _Counts()
        self._head = 0
        self._next_seq = 1
        self._closed = False
        self._finalizer = weakref.finalize(self, self._buf.release)
        exit_hooks.track(self)
        if zeroise_on_signals:
            exit_hooks.install()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        if start_sweeper:
            self._sweeper = threading.Thread(target=self._sweep_forever,
                                             name="dispenser-store-sweeper", daemon=True)
            self._sweeper.start()

    # -- public API -------------------------------------------------------------------

    def decide(self, probe: np.ndarray, *, keep_probe: bool = False) -> Decision:
        """Deny if `probe` surely matches an entry in the deny window; otherwise reserve a slot
        for it and say whether the full or the shorter ribbon goes out (module docstring,
        "Decisions"). `probe` (float32, (dim,), L2-normalised) is zeroised afterwards unless
        `keep_probe`."""
        try:
            self._check_probe(probe)
            with self._lock:
                self._ensure_open()
                now = self._clock.now()
                norm_sq = kernels.squared_norm(probe)
                if not (math.isfinite(norm_sq) and abs(norm_sq - 1.0) <= _NORM_TOLERANCE):
                    raise DispenserError("store: the probe template is not L2-normalised "
                                         "(or holds NaN/inf)")
                self._expire(now)
                decision = self._decide_locked(probe, now)
                self._rezeroise_if_closed()
            return decision
        finally:
            if not keep_probe:
                _wipe(probe)

    def commit(self, reservation: Reservation) -> bool:
        """The paper went out: the reserved entry becomes live, its deny window starts now.
        False (nothing changes) if the reservation already timed out, was evicted or was
        resolved."""
        with self._lock:
            self._ensure_open()
            now = self._clock.now()
            self._expire(now)
            if not self._holds(reservation):
                return False
            self._buf.state[reservation.slot] = kernels.LIVE
            self._buf.served[reservation.slot] = now
            self._counts.commits += 1
            self._rezeroise_if_closed()
            return True

    def rollback(self, reservation: Reservation) -> bool:
        """No paper went out (jam, empty, timeout): zeroise the reserved slot so the person is
        not denied later. False if it was already gone."""
        with self._lock:
            self._ensure_open()
            now = self._clock.now()
            self._expire(now)
            if not self._holds(reservation):
                return False
            self._buf.clear(reservation.slot)
            self._counts.rollbacks += 1
            self._keys.shred_unused(now)
            self._rezeroise_if_closed()
            return True

    def sweep(self) -> int:
        """Zeroise everything due now (retention reached, reservation timed out); return how
        many slots were freed. The sweeper thread calls this every sweep period."""
        with self._lock:
            if self._closed:
                return 0
            self._counts.sweeps += 1
            freed = self._expire(self._clock.now())
            self._rezeroise_if_closed()
            return freed

    def preload(self, faces: np.ndarray) -> int:
        """Admit each row of `faces` ((n, dim) float32, L2-normalised) as a live entry
        served now, without matching it against anything: O(n), where `decide` + `commit`
        per face costs O(n^2). For benchmarks and audits that need a full store; the entries
        then match, age and are deleted like any other, and a full store evicts its oldest
        as `decide` does. `faces` is left to the caller. Returns how many were evicted."""
        if not (isinstance(faces, np.ndarray) and faces.dtype == np.float32
                and faces.ndim == 2 and faces.shape[1] == self.dim):
            raise DispenserError(f"store: preload takes a float32 array of shape (n, {self.dim})")
        norms_sq = np.einsum("ij,ij->i", faces, faces, dtype=np.float64)
        if not np.all(np.abs(norms_sq - 1.0) <= _NORM_TOLERANCE):
            raise DispenserError("store: a preloaded template is not L2-normalised "
                                 "(or holds NaN/inf)")
        with self._lock:
            self._ensure_open()
            now = self._clock.now()
            self._expire(now)
            evictions = self._counts.evictions
            for face in faces:
                slot = self._place(face, now)
                self._buf.served[slot] = now
                self._buf.state[slot] = kernels.LIVE
                self._counts.commits += 1
            self._rezeroise_if_closed()
            return self._counts.evictions - evictions

    def raw_buffers(self) -> RawBuffers:
        """Read-only views of the store's raw memory (see RawBuffers), for audits."""
        return self._buf.read_only()

    def counters(self) -> StoreCounters:
        """A snapshot of the counters."""
        with self._lock:
            c = self._counts
            return StoreCounters(
                decisions=c.decisions, denials=c.denials, shorts=c.shorts, admits=c.admits,
                commits=c.commits,
                rollbacks=c.rollbacks, timeouts=c.timeouts, sweeps=c.sweeps,
                deletions=c.deletions, evictions=c.evictions,
                occupancy=int(np.count_nonzero(self._buf.state)),
                keys_live=self._keys.live(), keys_shredded=self._keys.shredded)

    def close(self) -> None:
        """Stop the sweeper and overwrite every buffer with zeros. Idempotent."""
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(_JOIN_TIMEOUT_S)
        with self._lock:
            self._closed = True
            self._finalizer()  # zeroise and unlock now; it will not run again at exit
        event(_log, "store_closed", logging.DEBUG)

    def emergency_zeroise(self) -> None:
        """For the signal handler: zeros everywhere now, without the lock; store closed."""
        self._closed = True
        self._stop.set()
        self._buf.zeroise()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- internals (called with the lock held) -------------------------------------------

    def _check_probe(self, probe: object) -> None:
        if not (isinstance(probe, np.ndarray) and probe.dtype == np.float32
                and probe.shape == (self.dim,) and probe.flags.c_contiguous):
            raise DispenserError(f"store: a probe must be a contiguous float32 array of shape "
                                 f"({self.dim},)")

    def _ensure_open(self) -> None:
        if self._closed:
            raise DispenserError("store: the template store is closed")

    def _rezeroise_if_closed(self) -> None:
        if self._closed:  # a signal handler ran while we held the lock
            self._buf.zeroise()

    def _decide_locked(self, probe: np.ndarray, now: float) -> Decision:
        b = self._buf
        try:
            best, live = kernels.best_match(b.rows, b.state, b.served, b.slot_key,
                                            self._keys.keys, self._keys.refs, probe,
                                            b.rotated, b.scratch, now,
                                            self.settings.deny_window_s)
        except BaseException:  # the kernel zeroises both scratch arrays when it returns
            b.rotated.fill(0.0)
            b.scratch.fill(0.0)
            raise
        likely, certain = self.rule.thresholds(live)
        self._counts.decisions += 1
        best_similarity = float(best) if math.isfinite(best) else None
        if is_match(best, certain):
            self._counts.denials += 1
            return Decision(Verdict.DENY, None, best_similarity, live)
        verdict = Verdict.SHORT if is_match(best, likely) else Verdict.DISPENSE
        if verdict is Verdict.SHORT:
            self._counts.shorts += 1
        return Decision(verdict, self._reserve(probe, now), best_similarity, live)

    def _reserve(self, probe: np.ndarray, now: float) -> Reservation:
        slot = self._place(probe, now)
        self._buf.served[slot] = 0.0
        self._buf.state[slot] = kernels.RESERVED
        return Reservation(slot=slot, generation=int(self._buf.generation[slot]))

    def _place(self, probe: np.ndarray, now: float) -> int:
        """Seal `probe` under the current key into a free slot (evicting the oldest entry
        if none is free); the caller sets its state and served time."""
        b = self._buf
        slot, must_evict = kernels.pick_slot(b.state, b.seq, self._head)
        if must_evict:
            b.clear(slot)
            self._counts.evictions += 1
        k = self._keys.current(now)
        kernels.seal_row(self._keys.keys[k], probe, b.scratch, b.rows[slot])
        b.born[slot] = now
        b.seq[slot] = self._next_seq
        b.slot_key[slot] = k
        self._keys.refs[k] += 1
        self._next_seq += 1
        self._head = (slot + 1) % b.state.shape[0]
        self._counts.admits += 1
        self._keys.shred_unused(now)
        return slot

    def _holds(self, reservation: Reservation) -> bool:
        if not isinstance(reservation, Reservation):
            raise DispenserError("store: commit/rollback take the Reservation from a Decision")
        slot = reservation.slot
        return (0 <= slot < self._buf.state.shape[0]
                and self._buf.generation[slot] == reservation.generation
                and self._buf.state[slot] == kernels.RESERVED)

    def _expire(self, now: float) -> int:
        b = self._buf
        deleted, timed_out = kernels.sweep_due(
            b.rows, b.state, b.born, b.served, b.seq, b.slot_key, self._keys.refs, now,
            self.settings.retention_s, self.settings.reservation_timeout_s, b.generation)
        self._counts.deletions += deleted
        self._counts.rollbacks += timed_out
        self._counts.timeouts += timed_out
        self._keys.shred_unused(now)
        return int(deleted + timed_out)

    def _sweep_forever(self) -> None:
        period = self.settings.sweep_period_s
        deadline = self._clock.now() + period
        while self._clock.sleep_until(deadline, self._stop):
            # Read the time *before* sweeping: the sweep runs at or after `now`, so the next
            # deadline is at most one period after it even if this thread is descheduled
            # between the two (reading it after the sweep would let the schedule skip what
            # fell due in between; a slow or emulated board shows it).
            now = self._clock.now()
            try:
                self.sweep()
            except Exception as exc:  # keep deleting: a dead sweeper would break retention
                event(_log, "sweep_failed", logging.ERROR, error=type(exc).__name__)
            deadline += period
            if deadline <= now:
                deadline = now + period

"""The store's guarantees, checked on the installed package with a virtual clock
(invariants 1, 2, 4, 7), and the process memory scan: after retention, no copy of any
admitted template, in any form, survives anywhere in the process (invariants 2 and 5).

These checks look at the store's raw buffers (what a memory dump would see) through its
read-only inspection views (`TemplateStore.raw_buffers`), not only at its API.
"""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dispenser.audit.registry import Evidence, check, require
from dispenser.clock import VirtualClock
from dispenser.config import Settings, StoreSettings
from dispenser.store import TemplateStore
from dispenser.store.rule import MatchRule, rule_for

DIM = 128
# Real-time bound for the sweeper thread to react to a virtual-clock advance.
_SWEEPER_WAIT_S = 10.0


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    v /= np.linalg.norm(v)
    return v


def _nonzero_rows(store: TemplateStore) -> int:
    rows = store.raw_buffers().rows
    return int(np.count_nonzero(rows.view(np.uint8).reshape(rows.shape[0], -1).any(axis=1)))


@contextmanager
def _store(clock: VirtualClock, *, sweeper: bool = False, **settings: float
           ) -> Iterator[TemplateStore]:
    s = StoreSettings(**settings)  # type: ignore[arg-type]
    store = TemplateStore(s, rule=rule_for(Settings()), dim=DIM, clock=clock,
                          start_sweeper=sweeper, zeroise_on_signals=False)
    try:
        yield store
    finally:
        store.close()


def _serve(store: TemplateStore, probe: np.ndarray) -> int:
    d = store.decide(probe.copy())
    require(d.dispense and d.reservation is not None, "a new face was not served")
    assert d.reservation is not None
    require(store.commit(d.reservation), "a reservation could not be committed")
    return d.reservation.slot


def _wait_until(predicate: Callable[[], bool]) -> bool:
    """Poll `predicate` for up to the real-time bound (the sweeper runs in its own thread)."""
    deadline = time.monotonic() + _SWEEPER_WAIT_S
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


@check("deny-window-boundary", invariant="1. Deny window",
       claim="The same face is refused just before the deny window ends and served from the "
             "moment it ends; a refusal does not restart the wait.",
       method="Serve a template at t; probe the same template at t + 540 s - 1 ms (must be "
              "refused) and at t + 540 s (must be served), on a virtual clock.")
def deny_window_boundary() -> Evidence:
    clock = VirtualClock(1000.0)
    face = _unit(np.random.default_rng(1))
    with _store(clock) as store:
        _serve(store, face)
        clock.advance(540.0 - 1e-3)
        require(not store.decide(face.copy()).dispense, "refused too late: served inside window")
        clock.advance(1e-3)
        d = store.decide(face.copy())
        require(d.dispense, "the same face was still refused at the end of the deny window")
    return {"deny_window_s": 540.0, "epsilon_s": 1e-3}


@check("retention-sweeper", invariant="2. Retention",
       claim="Every template is overwritten with zeros by the sweeper no later than one "
             "sweep period after its retention limit, even when nobody uses the machine.",
       method="Serve 64 people, then let only the sweeper thread run while the virtual "
              "clock passes retention + one sweep period; the raw template buffer, "
              "timestamps and every key must be all zeros.")
def retention_sweeper() -> Evidence:
    clock = VirtualClock(1000.0)
    rng = np.random.default_rng(2)
    with _store(clock, sweeper=True, capacity=128) as store:
        for _ in range(64):
            _serve(store, _unit(rng))
            clock.advance(1.0)
        require(_nonzero_rows(store) == 64, "served templates are not in the store")
        clock.advance(600.0 + store.settings.sweep_period_s)  # past the last one's limit
        b = store.raw_buffers()
        gone = _wait_until(lambda: not bool(b.rows.any() or b.born.any() or b.served.any()
                                             or b.keys.any()))
        require(gone, "template bytes, timestamps or keys survived retention + sweep period")
        sweeps = store.counters().sweeps
    return {"templates": 64, "sweeps": sweeps, "nonzero_rows_after": 0}


@check("suspend-jump", invariant="3. Time",
       claim="After a suspend (the clock jumps far ahead at once), everything due is "
             "deleted at the first opportunity.",
       method="Serve 16 people, jump the virtual clock by 2 hours, run one sweep; no raw "
              "template row may hold a non-zero byte.")
def suspend_jump() -> Evidence:
    clock = VirtualClock(1000.0)
    rng = np.random.default_rng(3)
    with _store(clock) as store:
        for _ in range(16):
            _serve(store, _unit(rng))
        clock.advance(7200.0)
        store.sweep()
        require(_nonzero_rows(store) == 0, "templates survived a suspend-like jump")
    return {"jump_s": 7200.0}


@check("denied-and-failed-not-stored", invariant="4. Not stored",
       claim="A refused probe is not stored, and a dispense that fails (jam, empty) leaves "
             "no template that would refuse the person next time.",
       method="Refuse a repeat probe (raw row count unchanged, its bytes nowhere in the "
              "buffer); roll back a failed dispense (slot all zeros) and serve the same "
              "face again immediately.")
def denied_and_failed_not_stored() -> Evidence:
    clock = VirtualClock(1000.0)
    rng = np.random.default_rng(4)
    person, other = _unit(rng), _unit(rng)
    with _store(clock) as store:
        _serve(store, person)
        rows_before = _nonzero_rows(store)
        require(not store.decide(person.copy()).dispense, "a repeat visitor was not refused")
        require(_nonzero_rows(store) == rows_before, "a refused probe was stored")
        d = store.decide(other.copy())
        require(d.dispense and d.reservation is not None, "a new face was not served")
        assert d.reservation is not None
        store.rollback(d.reservation)
        require(not store.raw_buffers().rows[d.reservation.slot].any(),
                "rollback left bytes behind")
        require(store.decide(other.copy()).dispense, "a failed dispense still refuses")
    return {"rows_after_denial": rows_before}


@check("full-store-fails-open", invariant="7. Bounded everything",
       claim="When the store is full the oldest entry is evicted (zeroised) and the new "
             "person is served: the machine never blocks a stranger.",
       method="A store of capacity 8 serves 9 different people; the 9th is served, one "
              "eviction is counted and 8 rows hold data.")
def full_store_fails_open() -> Evidence:
    clock = VirtualClock(1000.0)
    rng = np.random.default_rng(5)
    with _store(clock, capacity=8) as store:
        for _ in range(9):
            _serve(store, _unit(rng))
            clock.advance(1.0)
        c = store.counters()
        require(c.evictions == 1 and _nonzero_rows(store) == 8,
                f"evictions={c.evictions}, rows={_nonzero_rows(store)}")
    return {"capacity": 8, "served": 9, "evictions": 1}


def _astronaut_variants(count: int) -> Iterator[np.ndarray]:
    """BGR frames of one public-domain portrait, each slightly different (brightness,
    small rotation, mirror), so each yields a distinct template through the pipeline."""
    import cv2

    from dispenser.vision.images import load_image_bgr

    base = load_image_bgr(Path(str(importlib.resources.files("dispenser.data")
                                   .joinpath("astronaut.png"))))
    h, w = base.shape[:2]
    for i in range(count):
        angle = (i % 7 - 3) * 2.0
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        frame = cv2.warpAffine(base, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        frame = cv2.convertScaleAbs(frame, alpha=1.0, beta=float((i // 7) * 6 - 6))
        yield cv2.flip(frame, 1) if i % 2 else frame


# The memory scan admits this many templates, the first PIPELINE_TEMPLATES of them made by
# the real pipeline (detect, align, embed) from a portrait, the rest random unit vectors
# (the pipeline costs ~0.1 s a frame; the store treats every template alike).
SCAN_TEMPLATES = 1000
PIPELINE_TEMPLATES = 50
# Admissions are spread over this many seconds, so several epoch keys are used and shredded.
_SCAN_SPREAD_S = 300.0


@check("memory-scan-after-retention", invariant="2. Retention",
       claim="After the retention limit no copy of any admitted template survives anywhere "
             "in the process memory, in any stored form (as produced, and as sealed by "
             "its epoch key), and no epoch key survives.",
       method=f"Admit {SCAN_TEMPLATES} distinct templates into the store (threshold 1.0) over "
              f"{_SCAN_SPREAD_S:.0f} s of virtual time: the first {PIPELINE_TEMPLATES} made "
              "by the real pipeline (detect, align, embed) from frames of a public-domain "
              "portrait, the rest random unit templates. Record every form, advance past "
              "retention + one sweep, then scan /proc/self/mem for each; a template "
              "admitted later (still live) must be found (positive control).")
def memory_scan_after_retention() -> Evidence:
    from dispenser.privacy.memscan import scan_own_memory
    from dispenser.vision import FacePipeline

    count = SCAN_TEMPLATES
    clock = VirtualClock(1000.0)
    settings = Settings()
    rng = np.random.default_rng(5)
    # Reference copies, each in one array of its own that its scan excludes: every form of
    # every expired template, the epoch keys that protected them, and the live control.
    expired = np.zeros((2 * count, DIM), np.float32)
    live = np.zeros((2, DIM), np.float32)
    template = np.zeros(DIM, np.float32)
    portrait = _astronaut_variants(PIPELINE_TEMPLATES)
    with FacePipeline(settings.vision) as pipe, TemplateStore(
            StoreSettings(capacity=count), rule=MatchRule.fixed(1.0), dim=DIM, clock=clock,
            start_sweeper=False, zeroise_on_signals=False) as store:
        raw = store.raw_buffers()
        key_array = raw.keys
        keys = np.zeros((key_array.shape[0], key_array[0].size), np.float32)
        for i in range(count):
            frame = next(portrait, None)
            if frame is not None:
                require(pipe.embed_largest_face(frame, template) is not None,
                        "the pipeline found no face in the portrait")
            else:  # written in place: no temporary copy of the template is made
                rng.standard_normal(dtype=np.float32, out=template)
                template /= np.float32(np.linalg.norm(template))
            expired[2 * i] = template
            d = store.decide(template)
            require(not template.any(), "the store did not zeroise the caller's probe")
            require(d.dispense and d.reservation is not None, "a distinct template was refused")
            assert d.reservation is not None
            store.commit(d.reservation)
            slot = d.reservation.slot
            expired[2 * i + 1] = raw.rows[slot]
            k = int(raw.slot_key[slot])
            keys[k] = key_array[k].reshape(-1)
            clock.advance(_SCAN_SPREAD_S / count)
        clock.advance(settings.store.retention_s + settings.store.sweep_period_s)
        store.sweep()
        control = _unit(np.random.default_rng(6))
        live[0] = control
        slot = _serve(store, control)
        live[1] = raw.rows[slot]
        found_live = scan_own_memory(live)
        found_expired = scan_own_memory(expired)
        used_keys = np.ascontiguousarray(keys[keys.any(axis=1)])
        keys.fill(0.0)
        found_keys = scan_own_memory(used_keys)
    require(found_live.hits[0] >= 1 and found_live.hits[1] >= 1,
            "positive control failed: a live template was not found by the scan")
    require(found_expired.total_hits == 0,
            f"{found_expired.total_hits} copies of expired templates survive in memory")
    require(found_keys.total_hits == 0,
            f"{found_keys.total_hits} copies of shredded keys survive in memory")
    return {"templates_admitted": count, "from_pipeline": PIPELINE_TEMPLATES,
            "forms_scanned": 2 * count, "keys_scanned": int(used_keys.shape[0]),
            "bytes_scanned": found_expired.bytes_scanned,
            "regions_scanned": found_expired.regions_scanned,
            "positive_control_hits": found_live.total_hits, "surviving_copies": 0}

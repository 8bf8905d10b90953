"""The vision stages are registered with `dispenser bench` and measure what they say."""

from __future__ import annotations

from dispenser import perf


def test_vision_measurements_are_registered() -> None:
    registry = perf.load_measurements()
    assert {"vision.detect", "vision.align", "vision.embed"} <= set(registry)


def test_detect_and_align_measurements_run() -> None:
    options = perf.Options(quick=True, min_time_s=0.001, max_rounds=3)
    results = perf.run(["vision.detect", "vision.align"], options)
    names = [r.name for r in results]
    assert names == [f"vision.detect {label} {t}t" for t in (1, 2)
                     for label in ("640x480", "320x240", "640x480 no face")] + [
                         "vision.align sface", "vision.align dlib"]
    assert all(r.value > 0 and r.rounds >= 3 and r.unit == "s" for r in results)
    assert all(r.note.endswith("x 1 thread") for r in results if r.name.endswith(" 2t"))

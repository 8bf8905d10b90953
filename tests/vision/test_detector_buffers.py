"""The detector's face data lives only in buffers it owns, and only while detect() runs.

Two kinds of evidence: the owned arrays themselves (non-zero while the networks run, all
zero bytes afterwards, also after a failure), and a scan of the whole process memory for
the O-Net input crop (found while O-Net runs, nowhere once detect() has returned).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from dispenser.vision.detector import ONET_BATCH, ONET_SIZE, MtcnnDetector


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector(min_face_px=40, max_side_px=640, threads=2)


@pytest.fixture
def astronaut_rgb(astronaut_bgr: np.ndarray) -> np.ndarray:
    """The astronaut mirrored: a face no other test feeds the detector, so a copy another
    test left behind cannot be mistaken for one of this test's."""
    return np.ascontiguousarray(astronaut_bgr[:, ::-1, ::-1])


class _SpySession:
    """Wraps one of the detector's sessions; calls `after_run` right after each run."""

    def __init__(self, inner: Any, after_run: Callable[[], None]) -> None:
        self.inner, self.after_run = inner, after_run

    def io_binding(self) -> Any:
        return self.inner.io_binding()

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> Any:
        return self.inner.run(names, feeds)

    def run_with_iobinding(self, binding: Any) -> None:
        self.inner.run_with_iobinding(binding)
        self.after_run()


def _spy_onet(detector: MtcnnDetector, after_run: Callable[[], None],
              monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrap the detector's O-Net session for one test (monkeypatch restores it)."""
    monkeypatch.setattr(detector, "_onet", _SpySession(detector._onet, after_run))


def _assert_all_zero(detector: MtcnnDetector) -> None:
    for buffer in detector.raw_buffers():
        assert not buffer.view(np.uint8).any()  # the raw bytes: no -0.0 or NaN left either


def test_every_owned_buffer_held_data_during_detect_and_is_zero_after(
        astronaut_rgb: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upscaled 1.5x so the frame is downscaled to 640 px first: every buffer is used
    (a fresh detector: no buffers of other frame sizes that this frame leaves unused)."""
    detector = MtcnnDetector(min_face_px=40, max_side_px=640, threads=2)
    frame = cv2.resize(astronaut_rgb, (768, 768), interpolation=cv2.INTER_LINEAR)
    in_use: list[list[bool]] = []
    _spy_onet(detector, lambda: in_use.append([bool(b.any()) for b in detector.raw_buffers()]),
              monkeypatch)
    faces = detector.detect(frame)
    assert len(faces) == 1 and faces[0].score > 0.99
    # At O-Net's last run every owned buffer holds something: the networks really read
    # and write them (no buffer is a decoy); the last buffer is filled after the run.
    assert in_use and all(in_use[-1][:-1])
    assert len(detector.raw_buffers()) >= 13
    _assert_all_zero(detector)


def test_owned_buffers_are_zeroised_when_detect_fails(
        detector: MtcnnDetector, astronaut_rgb: np.ndarray,
        monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        assert all(b.any() for b in detector._onet_io.raw_buffers())
        raise RuntimeError("injected failure after O-Net's run")

    _spy_onet(detector, fail, monkeypatch)
    with pytest.raises(RuntimeError, match="injected"):
        detector.detect(astronaut_rgb)
    _assert_all_zero(detector)


def test_detect_on_a_second_frame_size_keeps_results_and_zeroes_both(
        detector: MtcnnDetector, astronaut_rgb: np.ndarray) -> None:
    small = cv2.resize(astronaut_rgb, (384, 384), interpolation=cv2.INTER_AREA)
    first = detector.detect(astronaut_rgb)
    detector.detect(small)
    again = detector.detect(astronaut_rgb)
    assert [f.box for f in again] == [f.box for f in first]
    assert all(np.array_equal(a.landmarks, b.landmarks) for a, b in zip(again, first, strict=True))
    _assert_all_zero(detector)


PATTERN_BYTES = 6908
"""Length of each scanned piece (see _onet_input_of)."""


def _onet_input_of(rgb: np.ndarray, box: np.ndarray, reference: np.ndarray) -> None:
    """O-Net's input for one integer box, computed here from the MTCNN recipe (cut out with
    zero padding, area-resize to 48x48, swap the spatial axes, (x - 127.5) / 128), into
    `reference` (5, PATTERN_BYTES) uint8: rows 0-3 are the float32 network input (all but
    its first 2 and last 14 bytes) in four pieces, row 4 the uint8 48x48 crop (all but its
    last 4 bytes).

    Why the odd cut: (x - 127.5) / 128 has at most 8 significant bits, so the low two bytes
    of every float32 are zero, and the scanner's 4-byte anchor of a piece that starts on a
    float would be 0x0000 in its low half, matching every zero word in memory (minutes
    instead of seconds). Starting 2 bytes in puts the floats' high bytes in the anchor.
    The working arrays are zeroised in place, so only `reference` holds the patterns.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    height, width = rgb.shape[:2]
    padded = cv2.copyMakeBorder(rgb, max(0, -y0), max(0, y1 - height), max(0, -x0),
                                max(0, x1 - width), cv2.BORDER_CONSTANT, value=(0, 0, 0))
    patch = np.ascontiguousarray(
        padded[y0 + max(0, -y0):y1 + max(0, -y0), x0 + max(0, -x0):x1 + max(0, -x0)])
    crop = np.zeros((ONET_SIZE, ONET_SIZE, 3), np.uint8)
    net_input = np.zeros((ONET_SIZE, ONET_SIZE, 3), np.float32)
    cv2.resize(patch, (ONET_SIZE, ONET_SIZE), dst=crop, interpolation=cv2.INTER_AREA)
    np.copyto(net_input, crop.transpose(1, 0, 2))
    net_input -= 127.5
    net_input *= 0.0078125
    np.copyto(reference[:4], net_input.view(np.uint8).reshape(-1)[2:2 + 4 * PATTERN_BYTES]
              .reshape(4, PATTERN_BYTES))
    np.copyto(reference[4], crop.reshape(-1)[:PATTERN_BYTES])
    for scratch in (padded, patch, crop, net_input):
        scratch.fill(0)


def test_no_copy_of_the_onet_input_crop_survives_detect(
        detector: MtcnnDetector, astronaut_rgb: np.ndarray,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Scan our own address space for O-Net's input crop of the last candidate (the one
    whose uint8 crop is still in the crop buffer while O-Net runs)."""
    from dispenser.privacy.memscan import scan_own_memory

    candidates: list[np.ndarray] = []  # box coordinates only, no pixels
    real_output = detector._output

    def record(rgb: np.ndarray, boxes: np.ndarray) -> Any:
        candidates.append(np.round(boxes))
        return real_output(rgb, boxes)

    monkeypatch.setattr(detector, "_output", record)
    reference = np.zeros((5, PATTERN_BYTES), np.uint8)  # excluded from the scans
    during: list[tuple[int, ...]] = []

    def scan_while_onet_runs() -> None:
        assert len(candidates) == 1 and len(candidates[0]) <= ONET_BATCH  # one O-Net run
        _onet_input_of(astronaut_rgb, candidates[0][-1], reference)
        during.append(scan_own_memory(reference).hits)

    _spy_onet(detector, scan_while_onet_runs, monkeypatch)
    assert len(detector.detect(astronaut_rgb)) == 1
    # Positive control: the independently computed crop is exactly what O-Net was fed,
    # and the scan finds it in the detector's buffers while O-Net runs.
    assert len(during) == 1 and all(hits >= 1 for hits in during[0])
    after = scan_own_memory(reference)
    assert after.hits == (0, 0, 0, 0, 0)
    assert after.bytes_scanned > 10_000_000

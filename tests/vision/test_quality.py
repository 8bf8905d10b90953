"""Quality gate: each reason code fires on the image defect it names, and only then."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from dispenser.vision import face as codes
from dispenser.vision.detector import Detection, MtcnnDetector
from dispenser.vision.quality import (
    LIMITS,
    MAX_YAW_RATIO,
    assess_faces,
    dominant_index,
    gate_reason,
    pose_ratios,
)

# A frontal face: eyes level and 40 px apart, nose centred, mouth below.
FRONTAL = np.array([[100, 100], [140, 100], [120, 124], [104, 144], [136, 144]], np.float32)


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector(min_face_px=40, max_side_px=640, threads=2)


@pytest.fixture(scope="module")
def astronaut(detector: MtcnnDetector, astronaut_bgr: np.ndarray
              ) -> tuple[np.ndarray, Detection]:
    """(grey image, its one detection)."""
    (det,) = detector.detect(np.ascontiguousarray(astronaut_bgr[:, :, ::-1]))
    return cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY), det


def _det(landmarks: np.ndarray, score: float = 0.999,
         box: tuple[float, float, float, float] = (80, 70, 160, 170)) -> Detection:
    return Detection(box=box, score=score, landmarks=landmarks)


def test_pose_ratios_of_a_frontal_turned_and_tilted_face() -> None:
    iod, yaw, pitch, roll = pose_ratios(FRONTAL)
    assert iod == pytest.approx(40) and yaw == pytest.approx(0) and roll == pytest.approx(0)
    assert pitch == pytest.approx(24 / 44)
    turned = FRONTAL.copy()
    turned[2, 0] += 14  # nose 14 px towards one eye: a head turn
    assert pose_ratios(turned)[1] == pytest.approx(0.35)
    rotation = cv2.getRotationMatrix2D((120, 120), -30, 1.0)  # image rotation: roll
    tilted = cv2.transform(FRONTAL[None], rotation)[0]
    _, yaw_t, pitch_t, roll_t = pose_ratios(tilted)
    assert roll_t == pytest.approx(30, abs=1e-3)
    assert yaw_t == pytest.approx(0, abs=1e-5) and pitch_t == pytest.approx(24 / 44)


def test_the_astronaut_passes(astronaut: tuple[np.ndarray, Detection]) -> None:
    grey, det = astronaut
    (report,) = assess_faces(grey, [det])
    assert report.ok and report.reason == codes.OK
    assert 35 < report.inter_ocular_px < 50 and abs(report.yaw_ratio) < 0.1


@pytest.mark.parametrize(("change", "reason"), [
    (lambda g: cv2.GaussianBlur(g, (0, 0), 2.5), codes.BLURRY),
    (lambda g: (g * 0.25).astype(np.uint8), codes.TOO_DARK),
    (lambda g: np.clip(g.astype(int) + 110, 0, 255).astype(np.uint8), codes.TOO_BRIGHT),
])
def test_image_defects_give_their_reason(astronaut: tuple[np.ndarray, Detection],
                                          change: object, reason: str) -> None:
    grey, det = astronaut
    (report,) = assess_faces(change(grey), [det])  # type: ignore[operator]
    assert not report.ok and report.reason == reason


def test_detected_defects_end_to_end(detector: MtcnnDetector, astronaut_bgr: np.ndarray,
                                     camera_bgr: np.ndarray) -> None:
    def verdict(bgr: np.ndarray) -> str:
        dets = detector.detect(np.ascontiguousarray(bgr[:, :, ::-1]))
        assert dets, "the test image should still contain a detectable face"
        return assess_faces(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), dets[:1])[0].reason

    assert verdict(cv2.resize(astronaut_bgr, (220, 220))) == codes.TOO_SMALL
    rotation = cv2.getRotationMatrix2D((225, 120), 40, 1.0)
    assert verdict(cv2.warpAffine(astronaut_bgr, rotation, (512, 512))) == codes.NOT_FRONTAL
    assert verdict(cv2.resize(camera_bgr, (1024, 1024))) == codes.NOT_FRONTAL  # turned away


def test_synthetic_failures_in_check_order() -> None:
    grey = np.full((300, 300), 128, np.uint8)
    grey[::2] = 40  # stripes: sharp, mid-grey on average
    assert assess_faces(grey, [_det(FRONTAL)])[0].reason == codes.OK
    assert assess_faces(grey, [_det(FRONTAL, score=0.9)])[0].reason == codes.LOW_SCORE
    assert assess_faces(grey, [_det(FRONTAL * 0.5)])[0].reason == codes.TOO_SMALL
    turned = FRONTAL.copy()
    turned[2, 0] += 40 * (MAX_YAW_RATIO + 0.02)
    assert assess_faces(grey, [_det(turned)])[0].reason == codes.NOT_FRONTAL
    looking_down = FRONTAL.copy()
    looking_down[2, 1] = 143
    assert assess_faces(grey, [_det(looking_down)])[0].reason == codes.NOT_FRONTAL
    flat = np.full((300, 300), 128, np.uint8)
    assert assess_faces(flat, [_det(FRONTAL)])[0].reason == codes.BLURRY
    # A face box entirely outside the image has nothing to measure.
    outside = _det(FRONTAL, box=(400, 400, 480, 480))
    assert not assess_faces(grey, [outside])[0].ok


@pytest.mark.parametrize(("scale", "dark", "bright", "reason"), [
    (30 / 40, 40, 128, codes.OK),          # eyes 30 px apart: SFace's template holds up
    (26 / 40, 40, 128, codes.TOO_SMALL),
    (1.0, 20, 70, codes.OK),                # face mean grey 45: still reliable
    (1.0, 10, 58, codes.TOO_DARK),          # mean 34
])
def test_the_size_and_darkness_floors_measured_with_sface(
        scale: float, dark: int, bright: int, reason: str) -> None:
    """The floors docs/vision.md "The quality limits" derives: eye distance 28 px, face
    mean grey 40 (they were 32 px and 55)."""
    grey = np.full((300, 300), bright, np.uint8)
    grey[::2] = dark                      # stripes: sharp at any mean
    centre = np.array([120, 120], np.float32)
    landmarks = (FRONTAL - centre) * scale + centre
    (report,) = assess_faces(grey, [_det(landmarks)])
    assert report.reason == reason


def test_frame_rank_prefers_the_frontal_and_the_sharp_face(
        astronaut: tuple[np.ndarray, Detection]) -> None:
    """A hold keeps its best frames by this rank, not by the detector's score (~1.0 on
    every face that passes the gate)."""
    grey = np.full((300, 300), 128, np.uint8)
    grey[::2] = 40
    turned = FRONTAL.copy()
    turned[2, 0] += 40 * MAX_YAW_RATIO * 0.6
    frontal, half_turned = assess_faces(grey, [_det(FRONTAL)])[0], \
        assess_faces(grey, [_det(turned)])[0]
    assert frontal.ok and half_turned.ok
    assert frontal.frame_rank == pytest.approx(1.0)
    assert half_turned.frame_rank == pytest.approx(0.4, abs=1e-3)
    astro_grey, det = astronaut
    (sharp,) = assess_faces(astro_grey, [det])
    (soft,) = assess_faces(cv2.GaussianBlur(astro_grey, (0, 0), 1.2), [det])
    assert soft.ok and soft.frame_rank < sharp.frame_rank


def test_gate_reason_with_a_limit_lifted() -> None:
    """Measurement scripts judge the same measurements with one limit replaced."""
    grey = np.full((300, 300), 128, np.uint8)
    grey[::2] = 40
    turned = FRONTAL.copy()
    turned[2, 0] += 40 * (MAX_YAW_RATIO + 0.05)
    report = assess_faces(grey, [_det(turned)])[0]
    assert gate_reason(report, 0.999, True) == codes.NOT_FRONTAL == report.reason
    lifted = replace(LIMITS, max_yaw_ratio=MAX_YAW_RATIO + 0.1)
    assert gate_reason(report, 0.999, True, lifted) == codes.OK
    assert gate_reason(report, 0.9, True, lifted) == codes.LOW_SCORE


def test_several_faces_only_when_no_face_dominates() -> None:
    grey = np.full((400, 600), 128, np.uint8)
    grey[::2] = 40
    near = _det(FRONTAL, box=(80, 70, 160, 170))
    twin = _det(FRONTAL + np.array([300, 0], np.float32), box=(380, 70, 460, 170))
    far = _det(FRONTAL * 0.5 + np.array([400, 200], np.float32), box=(440, 230, 480, 280))
    reports = assess_faces(grey, [near, twin])
    assert [r.reason for r in reports] == [codes.SEVERAL_FACES] * 2
    assert dominant_index([far, near]) == 1
    reports = assess_faces(grey, [far, near])
    assert reports[1].ok and reports[0].reason == codes.SEVERAL_FACES
    assert dominant_index([]) is None


def test_report_codes_are_the_contract_codes() -> None:
    assert set(codes.REASONS) == {"too_small", "blurry", "too_dark", "too_bright",
                                  "not_frontal", "low_score", "several_faces", "ok"}

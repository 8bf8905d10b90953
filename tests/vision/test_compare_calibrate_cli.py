"""`dispenser compare` and `dispenser calibrate` through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.cli import main
from dispenser.config import Settings
from dispenser.store import threshold_for

# compare and calibrate --pairs use the rule's pairwise threshold (one live template).
PAIRWISE = threshold_for(1, Settings())


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray,
           camera_bgr: np.ndarray) -> Path:
    """A folder of test photos: the astronaut three ways, the camera man twice, no face,
    and a broken file."""
    root = tmp_path_factory.mktemp("photos")
    big_camera = cv2.resize(camera_bgr, (1024, 1024))
    for k, degrees in enumerate((0, 7, -7)):
        m = cv2.getRotationMatrix2D((256, 256), degrees, 1.0)
        cv2.imwrite(str(root / f"astro{k}.jpg"), cv2.warpAffine(astronaut_bgr, m, (512, 512)))
    cv2.imwrite(str(root / "camera0.png"), big_camera)
    cv2.imwrite(str(root / "camera1.jpg"), cv2.GaussianBlur(big_camera, (0, 0), 1.0))
    cv2.imwrite(str(root / "wall.png"), np.full((300, 300, 3), 90, np.uint8))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    return root


def test_compare_same_person(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(photos / "astro0.jpg"), str(photos / "astro1.jpg")]) == 0
    out = capsys.readouterr().out
    similarity = float(out.split()[1].rstrip(":"))
    assert similarity > 0.9 and f"same person (threshold {PAIRWISE:g})" in out


def test_compare_json_different_people(photos: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(photos / "astro0.jpg"), str(photos / "camera0.png"),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["same_person"] is False and result["similarity"] < PAIRWISE - 0.1
    assert result["threshold"] == PAIRWISE and result["quality"]["image_a"] == "ok"
    assert set(result) == {"similarity", "same_person", "threshold", "quality"}


@pytest.mark.parametrize(("name", "message"), [
    ("wall.png", "no face found in"),
    ("broken.jpg", "is not a PNG, JPEG, TIFF, BMP, WebP or PNM file"),
    ("missing.png", "does not exist"),
])
def test_compare_without_a_usable_face_exits_2(photos: Path, name: str, message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", str(photos / "astro0.jpg"), str(photos / name)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("dispenser: error: ") and message in captured.err
    assert captured.err.count("\n") == 1


def _pairs(root: Path, lines: list[str]) -> Path:
    path = root / "pairs.tsv"
    path.write_text("# a, b, same\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_calibrate_json(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    astros, cams = [f"astro{k}.jpg" for k in range(3)], ["camera0.png", "camera1.jpg"]
    lines = ["astro0.jpg\tastro1.jpg\t1", "astro1.jpg\tastro2.jpg\t1",
             "camera0.png\tcamera1.jpg\t1", "astro0.jpg\twall.png\t0",
             "broken.jpg\tastro0.jpg\t1"]
    lines += [f"{a}\t{c}\t0" for a in astros for c in cams]
    pairs = _pairs(photos, lines)
    assert main(["calibrate", "--pairs", str(pairs), "--root", str(photos), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    # progress went to stderr while the models loaded and the images were embedded
    assert captured.err.splitlines() == ["calibrate: loading the models, then embedding 7 "
                                         "images", *(f"calibrate: {k}/7 images embedded"
                                                     for k in range(1, 8))]
    assert report["images"] == 7
    assert report["images_without_face"] == ["wall.png"]
    assert list(report["images_unreadable"]) == ["broken.jpg"]
    assert (report["genuine_pairs"], report["impostor_pairs"], report["pairs_skipped"]) == \
        (3, 6, 2)
    assert report["eer"] == 0.0
    assert [p["far_target"] for p in report["at_far"]] == [0.01, 0.001, 0.0001]
    assert not any(p["resolved"] for p in report["at_far"])  # 6 impostor pairs only
    assert report["configured"] == {"threshold": PAIRWISE, "far": 0.0, "tar": 1.0}
    assert len(report["roc"]["thresholds"]) == len(report["roc"]["tar"]) > 2


def test_calibrate_text(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = _pairs(photos, ["astro0.jpg\tastro1.jpg\t1", "astro0.jpg\tcamera0.png\t0"])
    assert main(["calibrate", "--pairs", str(pairs), "--root", str(photos)]) == 0
    out = capsys.readouterr().out
    assert "equal-error rate 0.00 %" in out
    assert f"configured match.threshold {PAIRWISE:g}" in out
    assert "too few impostor pairs to measure: need >= 100" in out


@pytest.mark.parametrize(("lines", "message"), [
    (["astro0.jpg\tastro1.jpg\tyes"], "pairs.tsv:2: expected"),
    (["astro0.jpg astro1.jpg 1"], "pairs.tsv:2: expected"),
    ([], "lists no pairs"),
    (["astro0.jpg\tastro1.jpg\t1"], "need at least one scored genuine and one scored "
                                     "impostor pair"),
])
def test_calibrate_bad_pairs_files(photos: Path, lines: list[str], message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    pairs = _pairs(photos, lines)
    assert main(["calibrate", "--pairs", str(pairs), "--root", str(photos)]) == 2
    err = capsys.readouterr().err.splitlines()
    errors = [line for line in err if not line.startswith("calibrate: ")]  # progress
    assert len(errors) == 1 and message in errors[0] and err[-1] == errors[0]


def test_calibrate_missing_inputs(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--pairs", str(photos / "nope.tsv"), "--root",
                 str(photos)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["calibrate", "--pairs", str(photos / "wall.png"), "--root",
                 str(photos / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err

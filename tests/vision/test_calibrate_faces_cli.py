"""`dispenser calibrate --faces` through the real CLI: figures, files, errors, privacy."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.cli import main


def _variants(image: np.ndarray) -> list[np.ndarray]:
    out = []
    for degrees, gain in ((0, 1.0), (6, 0.85), (-6, 1.1)):
        h, w = image.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        out.append(np.clip(cv2.warpAffine(image, m, (w, h)) * gain, 0, 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray,
          camera_bgr: np.ndarray) -> Path:
    """Two identities in group 'lab' (3 photos each), one in 'street', a faceless photo."""
    root = tmp_path_factory.mktemp("faces")
    camera = cv2.resize(camera_bgr, (1024, 1024))
    for folder, image in (("lab__astro", astronaut_bgr), ("lab__camera", camera),
                          ("street__astro", astronaut_bgr[:, ::-1])):
        (root / folder).mkdir()
        for k, variant in enumerate(_variants(image)):
            cv2.imwrite(str(root / folder / f"{k}.jpg"), variant)
    cv2.imwrite(str(root / "street__astro" / "wall.png"), np.full((200, 200, 3), 90, np.uint8))
    return root


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory, astronaut_bgr: np.ndarray,
           camera_bgr: np.ndarray) -> Path:
    """Two short MJPEG clips, one person each, with small motion."""
    root = tmp_path_factory.mktemp("videos")
    for name, image in (("a.avi", astronaut_bgr), ("b.avi", cv2.resize(camera_bgr, (512, 512)))):
        h, w = image.shape[:2]
        writer = cv2.VideoWriter(str(root / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
        for k in range(20):
            writer.write(np.ascontiguousarray(np.roll(image, k, axis=1)))
        writer.release()
    return root


def test_faces_json_reports_groups_crowd_figures_and_writes_tables(
        faces: Path, videos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = tmp_path / "similarity.toml"
    assert main(["calibrate", "--faces", str(faces), "--videos", str(videos),
                 "--same-session", "lab", "--write-similarity", str(tables), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "calibrate: embedded 18/18 images" in captured.err  # progress on stderr
    assert result["images"] == 18 and result["faces"] == 17
    assert result["no_face"] == [str(faces / "street__astro" / "wall.png")]
    by_name = {g["name"]: g for g in result["groups"]}
    assert set(by_name) == {"lab", "street", "video", "all"}
    lab = by_name["lab"]
    assert (lab["identities"], lab["images"]) == (2, 6)
    assert (lab["genuine_pairs"], lab["same_session_pairs"], lab["impostor_pairs"]) == (6, 6, 9)
    assert by_name["video"]["same_session_pairs"] == 12  # 4 frames per clip, 2 clips
    crowd = lab["crowd"]["configured"]
    assert [c["live"] for c in crowd] == [20, 60, 200]
    for c in crowd:
        assert c["pairwise_far"] == 0.0 and c["wrongful_refusal"] == 0.0
        assert c["repeat_caught"] == 1.0 and c["repeat_pairs_are_same_session"]
        assert c["likely_threshold"] <= c["threshold"]
    assert "no_tail" in result["calibration"]  # a handful of people records no tail
    written = tomllib.loads(tables.read_text(encoding="utf-8"))
    assert "calibration" not in written
    assert written["similarity"]["lab"]["impostor_pairs"] == 9
    assert len(written["similarity"]["lab"]["impostor"]) == len(
        written["similarity"]["lab"]["probabilities"])


def test_faces_text_prints_aggregates_only(faces: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--faces", str(faces)]) == 0
    out = capsys.readouterr().out
    assert "configured rule" in out and "wrongful refusal" in out
    assert "no impostor tail recorded" in out
    # No vector of numbers (a template) anywhere: at most a few numbers per line.
    assert max(len(re.findall(r"-?\d+\.\d{3,}", line)) for line in out.splitlines()) <= 8


@pytest.mark.parametrize(("args", "message"), [
    (["--faces", "missing-folder"], "--faces missing-folder is not a folder"),
    (["--faces", "{faces}", "--same-session", "nope"], "--same-session nope: no such group"),
    (["--faces", "{faces}", "--pairs", "p.tsv"], "either --faces DIR or --pairs"),
    (["--pairs", "p.tsv", "--write-similarity", "x.toml"], "go with --faces"),
    ([], "either --faces DIR or --pairs"),
])
def test_bad_arguments_are_one_line_errors(faces: Path, args: list[str], message: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["calibrate", *(a.replace("{faces}", str(faces)) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dispenser: error: ") and message in err and err.count("\n") == 1


def test_large_photos_are_shrunk_before_padding() -> None:
    from dispenser.commands.calibrate_faces import PHOTO_MAX_SIDE, _padded

    photo = np.full((3000, 1200, 3), 7, np.uint8)
    padded = _padded(photo)
    assert max(padded.shape[:2]) == PHOTO_MAX_SIDE + 2 * (PHOTO_MAX_SIDE // 4)
    assert not photo.any()  # the caller's decoded photo is zeroised once copied


def test_an_image_the_pipeline_refuses_is_reported_and_the_run_goes_on(
        faces: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from dispenser.errors import DispenserError
    from dispenser.vision.pipeline import FacePipeline

    real = FacePipeline.embed_largest_face
    calls = {"n": 0}

    def refuse_the_second(self: FacePipeline, frame: np.ndarray, out: np.ndarray) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise DispenserError("camera frame has too many pixels")
        return real(self, frame, out)

    monkeypatch.setattr(FacePipeline, "embed_largest_face", refuse_the_second)
    assert main(["calibrate", "--faces", str(faces), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["unreadable"].values()) == ["camera frame has too many pixels"]
    assert result["faces"] == 8

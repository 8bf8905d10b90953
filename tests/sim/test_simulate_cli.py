"""`dispenser simulate` from the command line: the README's first command, crowd studies,
reports, determinism and one-line errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dispenser.cli import main
from dispenser.sim import report

# A hang guard, not a speed assertion: the default story is ~20 simulated minutes.
_BOUND_S = 240


def _simulate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DISPLAY": ""}
    return subprocess.run([sys.executable, "-m", "dispenser", "simulate", *args],
                          capture_output=True, text=True, timeout=_BOUND_S, env=env,
                          check=False)


def test_default_simulate_shows_served_denied_and_deleted_headless() -> None:
    done = _simulate("--speed", "max")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "real:" in out and "simulated:" in out  # says which stages are which
    assert "DISPENSE" in out and "paper out" in out
    assert "DENY" in out
    assert "deleted: retention 600 s reached" in out
    assert "no-scan button" in out
    assert "scripted visits behaving as expected: 5/5" in out
    assert "still in RAM 0" in out


def test_default_simulate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--speed", "max", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mode"] == "scripted" and doc["stages"]["simulated"]
    assert all(o["expected"] == o["observed"] for o in doc["outcomes"])
    assert {r["decision"] for r in doc["timeline"]} >= {"DISPENSE", "DENY", "BUTTON"}
    assert doc["counters"]["store_deletions"] == 3
    assert doc["counters"]["store_occupancy"] == 0


_SCENARIO = """
[scenario]
description = "ten busy minutes"
duration_min = 10
arrivals_per_hour = 240
repeat_share = 0.4
repeat_after_min = [1, 5]
staff = 1
staff_every_min = 3

[sweep]
thresholds = [0.9, 0.93]
deny_windows_s = [540]
"""


def test_crowd_study_is_byte_identical_for_a_seed_and_writes_a_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "busy.toml"
    scenario.write_text(_SCENARIO)
    outputs = []
    for extra in (["--report", str(tmp_path / "one")], ["--no-report"]):
        assert main(["simulate", "--scenario", str(scenario), "--seed", "5", "--json",
                     *extra]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    assert (tmp_path / "one" / "report.json").read_text() == outputs[0]
    doc = json.loads(outputs[0])
    assert doc["scenario"]["name"] == "busy" and len(doc["sweep"]) == 2
    for name in ("report.html", *report.PLOTS):
        path = tmp_path / "one" / name
        assert path.stat().st_size > 1000, name
    assert (tmp_path / "one" / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "one" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(report.PLOTS)


def test_crowd_summary_on_the_terminal(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "busy.toml"
    scenario.write_text(_SCENARIO)
    assert main(["simulate", "--scenario", str(scenario), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "paper" in out and "strangers wrongly refused" in out and "sweep:" in out
    # The shipped card's measured tables, its worst group named.
    assert "similarity statistics: measured: group 'kpop'" in out
    assert not list(tmp_path.glob("sim-report-*"))


_FIXTURE = Path(__file__).parent.parent / "data" / "similarity_sface_like.toml"


def test_crowd_from_a_calibrate_similarity_file_names_group_and_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "busy.toml"
    scenario.write_text(_SCENARIO.split("[sweep]")[0] + "[sweep]\ndeny_windows_s = [540]\n")
    assert main(["simulate", "--scenario", str(scenario),
                 "--no-report", "--json", "--similarity", str(_FIXTURE)]) == 0
    doc = json.loads(capsys.readouterr().out)
    model = doc["identity_model"]
    assert (model["group"], model["file"], model["status"]) == ("fixture", str(_FIXTURE),
                                                                 "provisional")
    # The sweep follows the file's SFace-scale tail, not dlib's 0.9 scale.
    assert all(0.3 < run["threshold"] < 0.6 for run in doc["sweep"])
    tail = model["quantiles"]["impostor"]["0.99"]
    assert abs(tail["table"] - 0.35) < 1e-3 and abs(tail["sampled"] - 0.35) < 0.02


@pytest.mark.parametrize(("text", "message"), [
    ("[similarity.a]\nprobabilities = [0.0, 0.5, 1.0]\n",
     r"similarity: .*bad.toml \[similarity.a\]: probabilities must be at least 5"),
    ("[calibration]\nworst_group = \"a\"\n", "has no \\[similarity.<group>\\] table"),
    ("not toml [", "is not valid TOML"),
])
def test_a_bad_similarity_file_is_one_line_naming_the_key(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    assert main(["simulate", "--scenario", "mall", "--no-report", "--similarity",
                 str(bad)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


@pytest.mark.parametrize(("argv", "message"), [
    (["--video", "/nonexistent/clip.mp4"], "does not exist"),
    (["--video", "/"], "--video / is a folder"),
    (["--images", "/nonexistent/photos"], "images: /nonexistent/photos does not exist"),
    (["--scenario", "rush-hour"], "unknown preset"),
])
def test_bad_input_is_one_line(argv: list[str], message: str,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """The line saying what was wrong is all there is: the banner used to come first."""
    assert main(["simulate", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("dispenser: error:") and message in err and err.count("\n") == 1


def test_bad_speed_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--speed", "fast"])
    assert exit_info.value.code == 2
    assert "speed must be a number or 'max'" in capsys.readouterr().err


@pytest.mark.parametrize(("seed", "message"), [
    ("-1", "seed must be 0 or more, not -1"),
    ("one", "seed must be a whole number, not 'one'"),
])
def test_bad_seed_is_one_line_not_a_traceback(seed: str, message: str) -> None:
    done = _simulate("--seed", seed)
    assert done.returncode == 2
    assert done.stderr == (f"dispenser simulate: error: argument --seed: {message} "
                           "(see dispenser simulate --help)\n")


def test_images_run_the_real_pipeline_with_a_headless_preview(
        tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each image is one visitor, shown until the machine has decided: the same face twice
    in a row gets one ribbon, then a refusal. (Each image used to show for 5 s, shorter
    than a serve, so the second face went by unscanned.) A broken file is skipped and
    reported."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    images = tmp_path / "images"
    images.mkdir()
    for name in ("1.png", "2.png"):
        (images / name).write_bytes((data_dir / "astronaut.png").read_bytes())
    (images / "3.png").write_bytes((data_dir / "camera.png").read_bytes()[:200])
    assert main(["simulate", "--images", str(images), "--preview", "--speed", "max"]) == 0
    out = capsys.readouterr().out
    assert "vision pipeline: detection" in out.split("simulated:")[0]
    assert "preview:   no display" in out
    decided = [(line.split()[1:3], line.split()[-4]) for line in out.splitlines()
               if line.split()[-4:-3] in (["DISPENSE"], ["DENY"])]
    assert decided == [(["image", "1/3"], "DISPENSE"), (["image", "2/3"], "DENY")]
    assert "  image skipped: 3.png: image " in out
    assert "deleted: retention 600 s reached" in out and "still in RAM 0" in out


def test_images_takes_one_image_file_as_one_visit(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--images photo.png` used to exit 0 having done nothing."""
    assert main(["simulate", "--images", str(data_dir / "astronaut.png"), "--speed",
                 "max"]) == 0
    out = capsys.readouterr().out
    assert "astronaut.png in front of the camera" in out
    assert "DISPENSE" in out and "still in RAM 0" in out


@pytest.mark.parametrize(("signum", "expected"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_a_stop_signal_ends_the_story_with_its_summary_and_cleans_up(
        signum: signal.Signals, expected: int, tmp_path: Path) -> None:
    """Ctrl-C exits 130, SIGTERM 0 (docs/operator.md); either way the simulated controller's
    /tmp/dispenser-sim-* folder is removed (SIGTERM used to kill the process and leave it)."""
    env = {**os.environ, "DISPLAY": "", "TMPDIR": str(tmp_path)}
    with subprocess.Popen([sys.executable, "-m", "dispenser", "simulate"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "steps up" in line:
                break
        assert list(tmp_path.glob("dispenser-sim-*"))   # the in-process controller's pty
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=_BOUND_S)
    assert proc.returncode == expected
    assert "stopped early" in out
    assert not list(tmp_path.glob("dispenser-sim-*"))

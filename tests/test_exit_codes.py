"""docs/operator.md's exit-code table, checked command by command: 2 and one line for bad
input, 1 for a command that ran and failed, 130 for Ctrl-C; the long-running commands stop
with 0 on SIGTERM (their own tests: tests/service/test_service_run_command.py and
tests/motor/test_cli_motor.py)."""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.cli import COMMANDS, main
from dispenser.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

_BOUND_S = 180.0  # a hang guard for model loading on a slow host, not a speed assertion

# command -> arguments that are bad input ({tmp} is a fresh folder)
_BAD_INPUT = {
    "simulate": ["--video", "{tmp}/missing.mp4"],
    "run": ["--source", "{tmp}/missing.mp4"],
    "compare": ["{tmp}/missing.png", "{tmp}/missing.png"],
    "calibrate": ["--pairs", "{tmp}/missing.tsv", "--root", "{tmp}"],
    "audit": ["--only", "no-such-check"],
    "bench": ["--only", "no.such"],
    "firmware-sim": ["--speed", "0"],
    "motor": ["--port", "/dev/null", "dispense", "0"],
    "display": ["--demo"],                                    # no --out
}


def _dispenser(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dispenser", *args], capture_output=True,
                          text=True, timeout=_BOUND_S, check=False, stdin=subprocess.DEVNULL)


def test_the_documented_table_lists_exactly_the_codes_the_program_uses(
        repo_root: Path) -> None:
    doc = (repo_root / "docs" / "operator.md").read_text(encoding="utf-8")
    table = doc.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert documented == {EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED}


def test_every_command_has_a_bad_input_case() -> None:
    assert set(_BAD_INPUT) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(_BAD_INPUT))
def test_bad_input_exits_2_with_one_line(command: str, tmp_path: Path) -> None:
    args = [a.format(tmp=tmp_path) for a in _BAD_INPUT[command]]
    done = _dispenser(command, *args)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("args", [
    ["motor", "--port", "/nonexistent/ttyACM9", "status"],   # no controller there
    ["run", "--status", "--status-dir", "{tmp}"],             # no service running
])
def test_a_command_that_ran_and_failed_exits_1(args: list[str], tmp_path: Path) -> None:
    done = _dispenser(*(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == EXIT_FAILURE
    assert len(done.stderr.splitlines()) == 1


def _video(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for _ in range(600):
        writer.write(np.full((120, 160, 3), 90, np.uint8))
    writer.release()
    return path


def _interrupt_when(argv: list[str], marker: str, cwd: Path) -> int:
    """Start `dispenser ARGV`, send SIGINT (Ctrl-C) once `marker` is on stdout or stderr,
    return the exit status."""
    out, err = cwd / "stdout.txt", cwd / "stderr.txt"
    with out.open("w") as o, err.open("w") as e, subprocess.Popen(
            [sys.executable, "-m", "dispenser", *argv], stdout=o, stderr=e,
            stdin=subprocess.PIPE, cwd=cwd, env={**os.environ, "DISPLAY": ""}) as child:
        try:
            deadline = time.monotonic() + _BOUND_S
            while marker not in out.read_text() + err.read_text():
                assert child.poll() is None, err.read_text()
                assert time.monotonic() < deadline, f"never saw {marker!r}"
                time.sleep(0.05)
            child.send_signal(signal.SIGINT)
            return child.wait(timeout=_BOUND_S)
        finally:
            if child.poll() is None:
                child.kill()


def _ctrl_c_cases(tmp: Path, data: Path) -> dict[str, tuple[list[str], str]]:
    pairs = tmp / "pairs.tsv"
    pairs.write_text("astronaut.png\tcamera.png\t0\n", encoding="utf-8")
    return {
        "simulate": (["simulate"], "steps up"),
        "run": (["run", "--source", str(_video(tmp / "grey.avi")), "--status-dir",
                 str(tmp / "run")], " started "),
        "calibrate": (["calibrate", "--pairs", str(pairs), "--root", str(data)],
                      "calibrate: loading"),
        "audit": (["audit", "--out", str(tmp / "report")], "  "),
        "bench": (["bench"], "bench: 1/"),
        "firmware-sim": (["firmware-sim"], "/ttySIM0"),
    }


# compare, motor and display finish before a signal could be aimed at them: Ctrl-C is
# delivered in-process, where their work is (KeyboardInterrupt raised by the patched call).
_SHORT = {"compare": ("dispenser.vision.pipeline.FacePipeline.__init__",
                      ["compare", "a.png", "b.png"]),
          "motor": ("dispenser.motor.MotorLink.status", ["motor", "--port", "sim", "status"]),
          "display": ("dispenser.display.demo.write_demo",
                      ["display", "--demo", "--out", "unused"])}


def test_every_command_has_a_ctrl_c_case(tmp_path: Path, data_dir: Path) -> None:
    assert set(_ctrl_c_cases(tmp_path, data_dir)) | set(_SHORT) == set(COMMANDS)


@pytest.mark.parametrize("command", ["simulate", "run", "calibrate", "audit", "bench",
                                     "firmware-sim"])
def test_ctrl_c_exits_130(command: str, tmp_path: Path, data_dir: Path) -> None:
    argv, marker = _ctrl_c_cases(tmp_path, data_dir)[command]
    assert _interrupt_when(argv, marker, tmp_path) == EXIT_INTERRUPTED


@pytest.mark.parametrize("command", sorted(_SHORT))
def test_ctrl_c_in_a_short_command_exits_130(command: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    target, argv = _SHORT[command]

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    assert main(argv) == EXIT_INTERRUPTED


def test_ctrl_c_surfacing_as_a_library_error_still_exits_130(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while onnxruntime was being imported ended in `ImportError: initialization
    failed` (raised from the KeyboardInterrupt) and a traceback with exit 1."""

    def import_interrupted(*args: object, **kwargs: object) -> None:
        raise ImportError("initialization failed") from KeyboardInterrupt()

    monkeypatch.setattr("dispenser.vision.pipeline.FacePipeline.__init__", import_interrupted)
    assert main(["compare", "a.png", "b.png"]) == EXIT_INTERRUPTED


def test_ctrl_c_while_an_audit_check_imports_a_library_exits_130(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the model-outputs check imported onnxruntime was recorded as that check
    failing ("unexpected ImportError"), the audit went on, wrote a FAIL report and exited 1."""
    from dispenser.audit import model_checks, registry
    from dispenser.commands import audit

    for name in audit._CHECK_MODULES:  # every check registered before the list is swapped
        importlib.import_module(name)

    def import_interrupted() -> registry.Evidence:
        raise ImportError("initialization failed") from KeyboardInterrupt()

    checks = [replace(c, run=import_interrupted) if c.run is model_checks.model_outputs else c
              for c in registry.CHECKS]
    monkeypatch.setattr(registry, "CHECKS", checks)
    assert main(["audit", "--only", "model-outputs", "--out", str(tmp_path)]) == EXIT_INTERRUPTED
    assert not any(tmp_path.iterdir())  # stopped: no report claims the check failed

"""The `dispenser` command line: help, version, bad arguments, bad config, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dispenser import __version__
from dispenser.cli import COMMANDS, main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed entry point in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "dispenser", *args], capture_output=True,
                          text=True, timeout=120, check=False)


def test_help_lists_every_subcommand() -> None:
    out = _run("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"dispenser {__version__}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([name, "--help"])
    assert info.value.code == 0
    assert f"dispenser {name}" in capsys.readouterr().out


def test_unknown_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2
    assert "invalid choice: 'fly'" in capsys.readouterr().err


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    out = _run("--config", str(missing), "audit")
    assert out.returncode == 2
    assert out.stderr.strip() == f"dispenser: error: config: file not found: {missing}"


def test_invalid_config_names_the_key_and_is_accepted_after_the_subcommand(
        tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[store]\nretention_s = 3600\n")
    out = _run("audit", "--config", str(cfg))
    assert out.returncode == 2
    assert out.stderr.strip() == ("dispenser: error: config: store.retention_s = 3600.0 is out "
                                  "of range (allowed 0 < x <= 600)")
    assert "Traceback" not in out.stderr


def test_a_usage_error_is_one_line_naming_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    """argparse printed its usage summary first, pushing the error below it."""
    with pytest.raises(SystemExit) as info:
        main(["motor", "--port", "/dev/null", "dispense", "-5"])
    assert info.value.code == 2
    assert capsys.readouterr().err == (
        "dispenser motor dispense: error: argument MM: length must be 1..65535 mm, not -5 "
        "(see dispenser motor dispense --help)\n")


def _damaged(kind: str, folder: Path) -> Path:
    """A photo whose damage makes a decoder library talk: a TIFF with its strip data zeroed
    (OpenCV's log: 'TIFF_Error LZWDecode ...'), a JPEG with 0xFF bytes in its scan data
    (libjpeg: 'Corrupt JPEG data'), a PNG with a zeroed run (libpng: 'libpng error')."""
    import cv2
    import numpy as np

    image = np.zeros((240, 320, 3), np.uint8)
    image[::8] = 200
    data = bytearray(cv2.imencode(f".{kind}", image)[1].tobytes())
    middle = len(data) // 2
    if kind == "tif":
        data[100:-1000] = bytes(len(data) - 1100)
    elif kind == "jpg":
        data[middle:middle + 200] = b"\xff" * 200
    else:
        data[middle:middle + 100] = bytes(100)
    path = folder / f"damaged.{kind}"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind", ["tif", "jpg", "png"])
def test_decoder_libraries_stay_quiet_before_the_one_line(kind: str, tmp_path: Path,
                                                          repo_root: Path) -> None:
    """OpenCV's, libjpeg's and libpng's own lines used to come before compare's one line."""
    photo = _damaged(kind, tmp_path)
    out = _run("compare", str(repo_root / "tests" / "data" / "astronaut.png"), str(photo))
    assert out.returncode == 2
    assert len(out.stderr.splitlines()) == 1
    assert out.stderr.startswith("dispenser: error: ") and str(photo) in out.stderr

"""The README's Python API example runs as printed, on the images in tests/data, and prints
what the README says it prints (the similarity to within the printed precision)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import dispenser


def _blocks(readme: str, language: str) -> list[str]:
    """The fenced blocks of the README's "Python API" section tagged `language`."""
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks, current, tag = [], [], None
    for line in section.splitlines():
        if line.startswith("```"):
            if tag is None:
                tag, current = line[3:].strip(), []
            else:
                if tag == language:
                    blocks.append("\n".join(current) + "\n")
                tag = None
        elif tag is not None:
            current.append(line)
    return blocks


@pytest.fixture(scope="module")
def readme() -> str:
    return (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def test_the_example_is_at_most_ten_lines(readme: str) -> None:
    (code,) = _blocks(readme, "python")
    assert len(code.strip().splitlines()) <= 10


def test_the_example_runs_and_prints_what_the_readme_shows(readme: str,
                                                           repo_root: Path) -> None:
    (code,) = _blocks(readme, "python")
    shown = _blocks(readme, "")[0].strip().splitlines()
    done = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.strip().splitlines()
    assert len(printed) == len(shown)
    for got, want in zip(printed, shown, strict=True):
        got_words, want_words = got.split(), want.split()
        assert len(got_words) == len(want_words), (got, want)
        for g, w in zip(got_words, want_words, strict=True):
            if re.fullmatch(r"-?\d+\.\d+", w):
                assert float(g) == pytest.approx(float(w), abs=0.0015), (got, want)
            else:
                assert g == w, (got, want)


def test_the_api_is_reexported_lazily() -> None:
    """`import dispenser` stays light (the CLI and firmware_sim import it); the API names
    resolve on first use."""
    code = ("import sys, dispenser; heavy = {'cv2', 'numba', 'onnxruntime'} & set(sys.modules);"
            " print(sorted(heavy)); print(dispenser.similarity.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.split() == ["[]", "dispenser.api"]
    assert set(dispenser.__all__) >= {"load_image", "face_templates", "similarity", "is_same",
                                      "TemplateStore"}
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = dispenser.nope  # type: ignore[attr-defined]

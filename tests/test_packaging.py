"""The installed package is complete, and it installs under a name of its own: every
package in the tree is listed in pyproject, and no install hint points at the unrelated
PyPI project called `dispenser`."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest

# "dispenser" on PyPI is someone else's project; ours is published under this name.
DISTRIBUTION = "auditable-dispenser"

# `pip install dispenser`, `pip install 'dispenser[report]'`, `pip install "dispenser[x]"`,
# also inside a longer pip command line.
_FOREIGN_HINT = re.compile(
    r"""pip3? install\b[^\n`&;|]*?(?<![\w./-])['"]?dispenser(\[|['"\s`]|$)""", re.MULTILINE)
_TEXT_SUFFIXES = {".md", ".py", ".toml", ".sh", ".service", ".txt", ".cfg", ".rules", ""}
_SKIPPED_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".mypy_cache",
                 ".ruff_cache", ".pytest_cache", ".hypothesis"}


def _packages_on_disk(root: Path) -> set[str]:
    """Dotted names of every folder with an __init__.py under src/dispenser and firmware_sim."""
    names = {".".join(i.parent.relative_to(root / "src").parts)
             for i in (root / "src" / "dispenser").rglob("__init__.py")}
    names |= {".".join(i.parent.relative_to(root).parts)
              for i in (root / "firmware_sim").rglob("__init__.py")}
    return names | {"dispenser.models"}  # models/ is mapped to dispenser.models


def _pyproject(root: Path) -> dict[str, object]:
    return tomllib.loads((root / "pyproject.toml").read_text())


def test_every_package_is_listed_in_pyproject(repo_root: Path) -> None:
    listed = set(_pyproject(repo_root)["tool"]["setuptools"]["packages"])  # type: ignore[index]
    assert _packages_on_disk(repo_root) == listed


def test_firmware_sim_and_models_are_importable_from_the_install() -> None:
    import firmware_sim
    from dispenser import models

    assert firmware_sim.__doc__ and models.__doc__


def test_the_distribution_has_its_own_name_and_installs_the_dispenser_command(
        repo_root: Path) -> None:
    project = _pyproject(repo_root)["project"]
    assert project["name"] == DISTRIBUTION  # type: ignore[index]
    assert project["scripts"] == {"dispenser": "dispenser.cli:main"}  # type: ignore[index]
    try:
        installed = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"no installed distribution {DISTRIBUTION!r}: an install made before the "
                    "rename is still in this environment; re-run pip install '.[test]'")
    assert [ep.value for ep in installed.entry_points if ep.name == "dispenser"] == \
        ["dispenser.cli:main"]


def _text_files(root: Path) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if any(p in _SKIPPED_DIRS or p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and path.suffix in _TEXT_SUFFIXES:
            found.append(path)
    return found


@pytest.mark.parametrize("line", [
    "pip install 'dispenser[report]'", 'pip install "dispenser[convert]"',
    "pip install dispenser", "pip install -U dispenser", "`pip install dispenser`",
])
def test_the_hint_pattern_catches_the_foreign_package(line: str) -> None:
    assert _FOREIGN_HINT.search(line)


@pytest.mark.parametrize("line", [
    "pip install '.[report]'", "pip install .", "pip install --find-links w auditable-dispenser",
    "pip install . && dispenser simulate",
])
def test_the_hint_pattern_lets_our_own_hints_through(line: str) -> None:
    assert not _FOREIGN_HINT.search(line)


def test_no_install_hint_names_the_foreign_dispenser_package(repo_root: Path) -> None:
    me = Path(__file__).resolve()
    offenders = [f"{path.relative_to(repo_root)}: {m.group(0)}"
                 for path in _text_files(repo_root) if path.resolve() != me
                 for m in _FOREIGN_HINT.finditer(path.read_text(errors="replace"))]
    assert offenders == []


def test_the_readme_says_how_to_get_the_plots(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    assert "plots" in readme
    assert "pip install '.[report]'" in readme

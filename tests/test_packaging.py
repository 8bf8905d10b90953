"""The installed package is complete: every package in the tree is listed in pyproject."""

from __future__ import annotations

import tomllib
from pathlib import Path


def _packages_on_disk(root: Path) -> set[str]:
    """Dotted names of every folder with an __init__.py under src/dispenser and firmware_sim."""
    names = {".".join(i.parent.relative_to(root / "src").parts)
             for i in (root / "src" / "dispenser").rglob("__init__.py")}
    names |= {".".join(i.parent.relative_to(root).parts)
              for i in (root / "firmware_sim").rglob("__init__.py")}
    return names | {"dispenser.models"}  # models/ is mapped to dispenser.models


def test_every_package_is_listed_in_pyproject(repo_root: Path) -> None:
    listed = set(tomllib.loads((repo_root / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    assert _packages_on_disk(repo_root) == listed


def test_firmware_sim_and_models_are_importable_from_the_install() -> None:
    import firmware_sim
    from dispenser import models

    assert firmware_sim.__doc__ and models.__doc__

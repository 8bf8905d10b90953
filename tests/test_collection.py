"""Any combination of test folders collects. tests/ is not a package, so pytest imports every
test module, conftest.py and helper module by its bare file name: two folders sharing a
helper's name, or a test importing `from conftest`, get whichever one was loaded first or
last (`pytest tests/motor tests/sim` once failed to collect: the motor tests imported the
simulator folder's conftest)."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

_BOUND_S = 300.0  # a hang guard for importing every test module on a loaded host


def _test_folders(repo_root: Path) -> list[Path]:
    return sorted(p for p in (repo_root / "tests").iterdir()
                  if p.is_dir() and any(p.glob("test_*.py")))


def test_no_two_test_files_share_a_module_name(repo_root: Path) -> None:
    names = Counter(p.name for p in (repo_root / "tests").rglob("*.py")
                    if p.name != "conftest.py")
    assert [name for name, count in names.items() if count > 1] == []


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return ({alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
            | {node.module for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) and node.module})


def test_no_test_module_imports_a_conftest(repo_root: Path) -> None:
    importers = [str(p.relative_to(repo_root)) for p in (repo_root / "tests").rglob("*.py")
                 if "conftest" in _imported_modules(p)]
    assert importers == []


def test_every_folder_collects_whatever_else_is_named_first(repo_root: Path) -> None:
    """All folders in reverse order: each folder's modules are imported after every other
    folder's conftest.py has been loaded."""
    folders = [str(p) for p in reversed(_test_folders(repo_root))]
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", *folders],
                          cwd=repo_root, capture_output=True, text=True, timeout=_BOUND_S,
                          check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-2000:]
    assert " error" not in done.stdout.splitlines()[-1]

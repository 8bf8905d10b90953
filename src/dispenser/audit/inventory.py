"""What was audited: the sha256 of every file of the installed program and of its models.

A report that names only a version number reads the same for a modified build. This one
hashes the files that actually ran: the `dispenser` package, the models folder it loads
(`dispenser.models`) and `firmware_sim`, each as found on this machine (an installed copy or
a checkout). Compiled caches (`__pycache__`) are left out: they are derived from the source.

Each package gets one digest that anyone can recompute with standard tools: the sha256 of
the `sha256sum` listing of its files, sorted by path (byte order), paths relative to the
package folder. For the `dispenser` folder (whose installed copy holds `models/`, hashed on
its own):

    cd "$(python -c 'import dispenser, os; print(os.path.dirname(dispenser.__file__))')"
    find . -type f ! -path '*/__pycache__/*' ! -path './models/*' -printf '%P\\n' \\
        | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.resources
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def tree_digest(root: Path, exclude: tuple[Path, ...] = ()) -> tuple[str, dict[str, str]]:
    """(digest of the sorted `sha256sum` listing, {relative path: sha256}) of every file
    under `root`, leaving out `__pycache__` folders and the folders in `exclude`."""
    files: dict[str, str] = {}
    for path in root.rglob("*"):
        if not path.is_file() or "__pycache__" in path.relative_to(root).parts:
            continue
        if any(path.is_relative_to(folder) for folder in exclude):
            continue
        files[path.relative_to(root).as_posix()] = file_sha256(path)
    ordered = sorted(files, key=lambda rel: rel.encode())
    listing = "".join(f"{files[rel]}  {rel}\n" for rel in ordered)
    return hashlib.sha256(listing.encode()).hexdigest(), {rel: files[rel] for rel in ordered}


def _package_root(name: str) -> Path:
    module = importlib.import_module(name)
    return Path(str(importlib.resources.files(module)))


def installation() -> dict[str, Any]:
    """Per package: its folder, file count and digest; and every file's own sha256."""
    roots = {name: _package_root(name) for name in ("dispenser", "dispenser.models",
                                                     "firmware_sim")}
    packages: dict[str, Any] = {}
    files: dict[str, str] = {}
    for name, root in roots.items():
        nested = tuple(other for other_name, other in roots.items()
                       if other_name != name and other.is_relative_to(root))
        digest, listing = tree_digest(root, nested)
        packages[name] = {"folder": str(root), "files": len(listing), "sha256": digest}
        files.update({f"{name}/{rel}": sha for rel, sha in listing.items()})
    return {"packages": packages, "files": files}

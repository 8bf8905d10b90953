"""`dispenser calibrate`: the match figures of a set of labelled faces.

Two ways in. `--faces DIR` (dispenser.commands.calibrate_faces): a folder per identity,
every pair scored, per group and pooled, with what matters at the machine: the chance a
stranger is refused with N = 20/60/200 live templates and the share of repeat-takes
caught, at the configured decision rule (dispenser.store.rule); `--write-similarity FILE`
keeps the aggregate tables for the simulator and the embedder's card.

`--pairs PAIRS.tsv --root DIR`: a list of labelled pairs (below).

PAIRS.tsv has one pair per line, tab-separated: path, path, 1 (same person) or 0
(different people); paths are relative to --root; blank lines and lines starting with '#'
are skipped. The models are loaded once and each distinct image is embedded once; a pair
is scored only when both images have a face. The report gives the ROC summary: equal-error
rate, TAR at FAR 1 %, 0.1 %, 0.01 % with the threshold for each (dispenser.vision.
calibration explains the conventions), what the configured match.threshold gives on this
data, and which images had no face or could not be read. Templates live in one array in
RAM that is zeroised before the command returns; nothing biometric is printed. Progress
(about 20 lines however many images) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dispenser import native_stderr
from dispenser.config import Settings
from dispenser.errors import EXIT_OK, DispenserError

ROC_POINTS_MAX = 500  # --json keeps at most this many ROC points (evenly spaced)
PROGRESS_LINES = 20   # about this many progress lines on stderr, whatever the set's size


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool


def read_pairs(path: Path) -> list[Pair]:
    """Parse PAIRS.tsv; one DispenserError line naming the line number on any bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DispenserError(f"pairs file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise DispenserError(f"pairs file {path} cannot be read: {reason}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) != 3 or not fields[0] or not fields[1] \
                or fields[2].strip() not in ("0", "1"):
            raise DispenserError(f"{path}:{number}: expected 'path<TAB>path<TAB>1 or 0'")
        pairs.append(Pair(fields[0], fields[1], fields[2].strip() == "1"))
    if not pairs:
        raise DispenserError(f"pairs file {path} lists no pairs")
    return pairs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", type=Path, metavar="DIR",
                        help="a folder per identity, named <group>__<identity>: every pair "
                             "scored, per group and pooled")
    parser.add_argument("--videos", type=Path, metavar="DIR",
                        help="with --faces: talking-head clips, one person each; four "
                             "frames per clip are same-session shots (group 'video')")
    parser.add_argument("--same-session", action="append", default=[], metavar="GROUP",
                        help="with --faces: this group's photos of a person were taken in "
                             "one sitting (repeat-takes); may be repeated")
    parser.add_argument("--write-similarity", type=Path, metavar="FILE.toml",
                        help="with --faces: write the aggregate similarity tables and the "
                             "worst-case impostor tail (for simulate --similarity and the "
                             "embedder's model card)")
    parser.add_argument("--pairs", type=Path, metavar="PAIRS.tsv",
                        help="tab-separated: path, path, 1 (same person) or 0 (different)")
    parser.add_argument("--root", type=Path, metavar="DIR",
                        help="with --pairs: folder the paths in PAIRS.tsv are relative to")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead "
                        "of text (with --pairs: with the ROC curve)")


def _embed_all(names: list[str], root: Path, settings: Settings, templates: np.ndarray
               ) -> tuple[set[str], dict[str, str]]:
    """Fill templates[k] for names[k]; returns (names without a face, unreadable: reason)."""
    from dispenser.vision.images import load_image_bgr
    from dispenser.vision.pipeline import FacePipeline

    no_face: set[str] = set()
    unreadable: dict[str, str] = {}
    step = max(1, len(names) // PROGRESS_LINES)
    _progress(f"loading the models, then embedding {len(names)} images")
    with FacePipeline(settings.vision) as pipe:
        for row, name in enumerate(names):
            if row % step == 0 and row:
                _progress(f"{row}/{len(names)} images embedded")
            try:
                with native_stderr.silenced():
                    image = load_image_bgr(root / name)
            except DispenserError as exc:
                unreadable[name] = str(exc)
                continue
            if pipe.embed_largest_face(image, templates[row]) is None:
                no_face.add(name)
            image.fill(0)
    _progress(f"{len(names)}/{len(names)} images embedded")
    return no_face, unreadable


def _progress(text: str) -> None:
    """Progress goes to stderr (a large set takes minutes; stdout stays the report)."""
    print(f"calibrate: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if (args.faces is None) == (args.pairs is None):
        raise DispenserError("calibrate needs either --faces DIR or --pairs PAIRS.tsv "
                             "--root DIR")
    if args.faces is not None:
        from dispenser.commands.calibrate_faces import run_faces

        return run_faces(args, settings)
    if args.videos is not None or args.same_session or args.write_similarity is not None:
        raise DispenserError("--videos, --same-session and --write-similarity go with --faces")
    if args.root is None:
        raise DispenserError("--pairs needs --root DIR (the folder its paths are relative to)")
    return _run_pairs(args, settings)


def _run_pairs(args: argparse.Namespace, settings: Settings) -> int:
    from dispenser.vision.calibration import calibrate

    if not args.root.is_dir():
        raise DispenserError(f"--root {args.root} is not a folder")
    pairs = read_pairs(args.pairs)
    names = sorted({p.a for p in pairs} | {p.b for p in pairs})
    index = {name: k for k, name in enumerate(names)}
    templates = np.zeros((len(names), 128), np.float32)
    try:
        no_face, unreadable = _embed_all(names, args.root, settings, templates)
        missing = no_face | set(unreadable)
        scored = [(float(np.dot(templates[index[p.a]], templates[index[p.b]])), p.same)
                  for p in pairs if p.a not in missing and p.b not in missing]
    finally:
        templates.fill(0)
    genuine = [s for s, same in scored if same]
    impostor = [s for s, same in scored if not same]
    if not genuine or not impostor:
        raise DispenserError(
            f"need at least one scored genuine and one scored impostor pair; got "
            f"{len(genuine)} genuine and {len(impostor)} impostor ({len(pairs) - len(scored)} "
            f"pairs skipped: {len(no_face)} images without a face, {len(unreadable)} "
            "unreadable)")
    report = calibrate(genuine, impostor)
    from dispenser.store.rule import threshold_for

    threshold = threshold_for(1, settings)  # the rule with one live template
    summary: dict[str, Any] = {
        "images": len(names), "images_without_face": sorted(no_face),
        "images_unreadable": unreadable, "pairs": len(pairs),
        "pairs_skipped": len(pairs) - len(scored),
        "genuine_pairs": report.genuine_pairs, "impostor_pairs": report.impostor_pairs,
        "eer": report.eer, "eer_threshold": report.eer_threshold,
        "at_far": [{"far_target": p.far_target, "threshold": p.threshold, "far": p.far,
                    "tar": p.tar, "resolved": p.resolved} for p in report.at_far],
        "configured": {"threshold": threshold, "far": _match_rate(impostor, threshold),
                       "tar": _match_rate(genuine, threshold)},
    }
    if args.json:
        step = max(1, len(report.roc.thresholds) // ROC_POINTS_MAX)
        summary["roc"] = {key: getattr(report.roc, key)[::step].round(6).tolist()
                          for key in ("thresholds", "far", "tar")}
        print(json.dumps(summary))
    else:
        _print_text(summary)
    return EXIT_OK


def _match_rate(scores: list[float], threshold: float) -> float:
    """The share of `scores` the device would call the same person at `threshold`."""
    from dispenser.store.rule import is_match

    return sum(is_match(score, threshold) for score in scores) / len(scores)


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _print_text(s: dict[str, Any]) -> None:
    print(f"images: {s['images']} ({len(s['images_without_face'])} without a face, "
          f"{len(s['images_unreadable'])} unreadable)")
    for name in s["images_without_face"]:
        print(f"  no face: {name}")
    for name, reason in s["images_unreadable"].items():
        print(f"  unreadable: {name}: {reason}")
    print(f"pairs: {s['genuine_pairs']} genuine, {s['impostor_pairs']} impostor scored "
          f"({s['pairs_skipped']} skipped)")
    print(f"equal-error rate {_pct(s['eer'])} at threshold {s['eer_threshold']:.4f}")
    print("FAR target  threshold  FAR        TAR")
    for p in s["at_far"]:
        note = "" if p["resolved"] else (f"  (too few impostor pairs to measure: need "
                                         f">= {round(1 / p['far_target'])})")
        print(f"{_pct(p['far_target']):<11} {p['threshold']:<10.4f} {_pct(p['far']):<10} "
              f"{_pct(p['tar'])}{note}")
    c = s["configured"]
    print(f"configured match.threshold {c['threshold']:g}: FAR {_pct(c['far'])}, "
          f"TAR {_pct(c['tar'])}")

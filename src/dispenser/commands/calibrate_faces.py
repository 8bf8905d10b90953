"""`dispenser calibrate --faces DIR`: open-set figures from a folder of labelled faces.

DIR holds a folder per identity, `<group>__<identity>/` (a folder without `__` is in group
"default"); every photo in it is that person. `--videos DIR` adds talking-head clips (one
person each, any folder depth): four frames per clip, at 20/40/60/80 % of its length, are
one person's same-session shots (a repeat-take seconds apart), group "video".
`--same-session GROUP` marks a group whose photos of a person were taken in one sitting.

Each image is embedded once through the device's pipeline (photos are padded by a quarter
of their size so tightly cropped faces are found); the templates sit in one swap-locked
array that is zeroised before the command returns, and frames and decoded photos are
zeroised after use. The figures (dispenser.vision.openset) are aggregates: nothing per
image is printed or written. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dispenser.config import Settings
from dispenser.errors import DispenserError

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}
VIDEO_POSITIONS = (0.2, 0.4, 0.6, 0.8)
DEFAULT_GROUP = "default"
VIDEO_GROUP = "video"


@dataclass(frozen=True)
class Sample:
    """One image to embed: where it is, whose it is, and its session label ("" = none)."""

    path: Path
    group: str
    identity: str
    session: str
    position: float | None = None  # a video frame's place in its clip (0..1)


def photo_samples(root: Path, same_session: set[str]) -> list[Sample]:
    """Every photo under root/<group>__<identity>/, in a stable order."""
    if not root.is_dir():
        raise DispenserError(f"--faces {root} is not a folder")
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        group, sep, _ = folder.name.partition("__")
        group = group if sep else DEFAULT_GROUP
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in PHOTO_SUFFIXES and path.is_file():
                samples.append(Sample(path, group, folder.name,
                                      "sitting" if group in same_session else ""))
    if not samples:
        raise DispenserError(f"--faces {root} has no <group>__<identity>/ folder with photos")
    return samples


def video_samples(root: Path) -> list[Sample]:
    """Four frames of every clip under root, each clip one identity in one session."""
    if not root.is_dir():
        raise DispenserError(f"--videos {root} is not a folder")
    clips = sorted(Path(folder, name) for folder, _, names in os.walk(root, followlinks=True)
                   for name in names if Path(name).suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise DispenserError(f"--videos {root} holds no video file")
    return [Sample(clip, VIDEO_GROUP, f"{VIDEO_GROUP}__{clip.relative_to(root)}", "clip", pos)
            for clip in clips for pos in VIDEO_POSITIONS]


PHOTO_MAX_SIDE = 2000
"""Larger photos are shrunk to this side first: the detector works on at most
vision.detect_max_side_px anyway, and the pipeline refuses frames over its pixel limit."""


def _padded(image: np.ndarray) -> np.ndarray:
    """The photo (shrunk to PHOTO_MAX_SIDE) with a black border of a quarter of its side,
    so that a tightly cropped face has the context the detector needs. Zeroises `image`."""
    import cv2

    side = max(image.shape[:2])
    small = image
    if side > PHOTO_MAX_SIDE:
        scale = PHOTO_MAX_SIDE / side
        small = cv2.resize(image, (max(1, round(image.shape[1] * scale)),
                                   max(1, round(image.shape[0] * scale))),
                           interpolation=cv2.INTER_AREA)
        image.fill(0)
    pad = max(small.shape[:2]) // 4
    padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    small.fill(0)
    return np.asarray(padded)


def _video_frame(sample: Sample) -> np.ndarray:
    import cv2

    capture = cv2.VideoCapture(str(sample.path))
    try:
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if not capture.isOpened() or frames <= 0:
            raise DispenserError(f"video {sample.path} cannot be read")
        capture.set(cv2.CAP_PROP_POS_FRAMES, int((sample.position or 0.0) * (frames - 1)))
        ok, frame = capture.read()
        if not ok or frame is None:
            raise DispenserError(f"video {sample.path} has no frame at "
                                 f"{sample.position:.0%} of its length")
        return np.asarray(frame)
    finally:
        capture.release()


def _images(samples: list[Sample]) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """(row, BGR image or None, reason if None) for every sample, decoded one at a time."""
    from dispenser.vision.images import load_image_bgr

    for row, sample in enumerate(samples):
        try:
            image = _video_frame(sample) if sample.position is not None \
                else _padded(load_image_bgr(sample.path))
        except DispenserError as exc:
            yield row, None, str(exc)
            continue
        yield row, image, ""


def embed_samples(samples: list[Sample], settings: Settings, templates: np.ndarray,
                  progress: Callable[[str], None]) -> tuple[np.ndarray, dict[str, str]]:
    """Fill templates[row]; returns (mask of rows with a face, unreadable path: reason)."""
    from dispenser.vision.pipeline import FacePipeline

    found = np.zeros(len(samples), dtype=bool)
    unreadable: dict[str, str] = {}
    started = time.monotonic()
    with FacePipeline(settings.vision) as pipe:
        for row, image, reason in _images(samples):
            if image is None:
                unreadable[str(samples[row].path)] = reason
            else:
                try:
                    found[row] = pipe.embed_largest_face(image, templates[row]) is not None
                except DispenserError as exc:
                    unreadable[str(samples[row].path)] = str(exc)
                finally:
                    image.fill(0)
            if (row + 1) % 100 == 0 or row + 1 == len(samples):
                progress(f"calibrate: embedded {row + 1}/{len(samples)} images "
                         f"({time.monotonic() - started:.0f} s)")
    return found, unreadable


def stderr_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def write_similarity(path: Path, summary: dict[str, Any]) -> None:
    """The `[calibration]` and `[similarity.<group>]` tables as TOML (docs/simulator.md)."""
    from dispenser.vision.openset import QUANTILE_PROBABILITIES

    lines = [f"# Written by dispenser calibrate --faces ({summary['embedder']}): "
             "aggregate similarity statistics only."]
    if "no_tail" not in summary["calibration"]:
        lines += ["", "[calibration]"]
        lines += [f"{key} = {_toml(v)}" for key, v in summary["calibration"].items()]
    for report in summary["groups"]:
        lines += ["", f"[similarity.{report['name']}]",
                  f"probabilities = {_toml(list(QUANTILE_PROBABILITIES))}"]
        for kind, table in report["quantiles"].items():
            if table:
                lines.append(f"{kind} = {_toml(table)}")
        lines += [f"impostor_pairs = {report['impostor_pairs']}",
                  f"genuine_pairs = {report['genuine_pairs']}",
                  f"genuine_same_session_pairs = {report['same_session_pairs']}"]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must read back
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DispenserError(f"--write-similarity {path} cannot be written: "
                             f"{exc.strerror}") from None


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def rule_thresholds(rule: Any, sizes: tuple[int, ...]) -> dict[int, tuple[float, float]]:
    """N -> (likely, certain) of a dispenser.store.rule.MatchRule."""
    return {n: tuple(rule.thresholds(n)) for n in sizes}


def summarise(samples: list[Sample], found: np.ndarray, templates: np.ndarray,
              settings: Settings, card: str) -> dict[str, Any]:
    """Per-group and pooled reports, the worst case, and the tail for the card.

    Crowd figures come under two rules: "configured" (what the device would do now) and
    "measured" (what it would do with the tail measured here installed in the card).
    """
    import dataclasses

    from dispenser.store.rule import ImpostorTail, MatchRule, rule_for
    from dispenser.vision.openset import (
        CROWD_SIZES,
        group_report,
        pair_scores,
        worst_case_tail,
    )
    from dispenser.vision.openset import ImpostorTail as OpensetTail

    identities = [s.identity for s in samples]
    sessions = [s.session for s in samples]
    groups = np.array([s.group for s in samples])
    names = [*sorted(set(groups[found])), "all"]
    scores = {}
    try:
        for name in names:
            members = found & ((groups == name) if name != "all" else True)
            scores[name] = pair_scores(templates, identities, sessions, members)
        match = settings.match
        rules = {"configured": rule_thresholds(rule_for(settings), CROWD_SIZES)}
        try:
            tail: OpensetTail | None = worst_case_tail(
                {g: s for g, s in scores.items() if g != "all"})
        except ValueError as exc:
            tail, no_tail = None, str(exc)
        if tail is not None:
            measured = MatchRule(tail=ImpostorTail.from_table(tail.table(), card),
                                 max_false_refusal=match.max_false_refusal,
                                 max_false_short=match.max_false_short)
            rules["measured"] = rule_thresholds(measured, CROWD_SIZES)
        reports = []
        for name in names:
            members = found & ((groups == name) if name != "all" else True)
            people = len({identities[i] for i in np.flatnonzero(members)})
            reports.append(group_report(name, scores[name], identities=people,
                                        images=int(members.sum()), rules=rules))
    finally:
        for s in scores.values():
            s.zeroise()
    by_group = [r for r in reports if r.name != "all"]
    worst = {rule: {str(n): max(by_group, key=lambda r: r.crowd[rule][k]
                                ["wrongful_refusal"]).name
                    for k, n in enumerate(CROWD_SIZES)} for rule in rules}
    calibration: dict[str, Any] = {"no_tail": no_tail} if tail is None else {
        "status": "measured",
        "measured_with": f"dispenser calibrate --faces: {int(found.sum())} faces of "
                         f"{len(set(np.asarray(identities)[found]))} people in "
                         f"{len(by_group)} groups",
        **{k: v for k, v in tail.table().items() if k != "status"}}
    return {
        "images": len(samples), "faces": int(found.sum()),
        "rule": {"max_false_refusal": match.max_false_refusal,
                 "max_false_short": match.max_false_short,
                 "thresholds": {rule: {str(n): {"likely": lt, "certain": ct}
                                       for n, (lt, ct) in th.items()}
                                for rule, th in rules.items()}},
        "groups": [dataclasses.asdict(r) for r in reports],
        "worst_group_by_live_count": worst,
        "calibration": calibration,
    }


def run_faces(args: argparse.Namespace, settings: Settings) -> int:
    """The --faces mode of `dispenser calibrate` (see the module docstring)."""
    import json

    from dispenser.embedders import embedder_card
    from dispenser.privacy.memory import locked_buffer, unlock_pages, zeroise

    samples = photo_samples(args.faces, set(args.same_session))
    if args.videos is not None:
        samples += video_samples(args.videos)
    unknown = set(args.same_session) - {s.group for s in samples}
    if unknown:
        raise DispenserError(f"--same-session {sorted(unknown)[0]}: no such group in "
                             f"{args.faces}")
    card = embedder_card(settings.vision.embedder, settings.vision.embedder_precision)
    templates = locked_buffer((len(samples), 128), np.float32)
    try:
        found, unreadable = embed_samples(samples, settings, templates, stderr_progress)
        if len({samples[i].identity for i in np.flatnonzero(found)}) < 2:
            raise DispenserError("need faces of at least two identities")
        summary = summarise(samples, found, templates, settings, card)
    finally:
        zeroise(templates)
        unlock_pages(templates)
    summary["embedder"] = card
    summary["no_face"] = sorted(str(s.path) for s, f in zip(samples, found, strict=True)
                                if not f and str(s.path) not in unreadable)
    summary["unreadable"] = unreadable
    if args.write_similarity is not None:
        write_similarity(args.write_similarity, summary)
    if args.json:
        print(json.dumps(summary))
    else:
        print_faces_text(summary)
    return 0


def _pct(x: float) -> str:
    return f"{100 * x:.3g} %"


def print_faces_text(s: dict[str, Any]) -> None:
    """A human summary: per group, the crowd figures under each rule."""
    print(f"embedder {s['embedder']}: {s['faces']} faces in {s['images']} images "
          f"({len(s['no_face'])} without a face, {len(s['unreadable'])} unreadable)")
    rule = s["rule"]
    print(f"targets: at most {_pct(rule['max_false_refusal'])} of strangers refused, "
          f"{_pct(rule['max_false_short'])} refused or shortened")
    print(f"{'group':<10} {'people':>6} {'faces':>6} {'impostor':>9} {'imp p99.99':>10} "
          f"{'TAR@1e-4':>8}")
    for g in s["groups"]:
        imp = g["quantiles"]["impostor"]
        tar = next((p["tar"] for p in g["at_far"] if p["far_target"] == 1e-4), float("nan"))
        print(f"{g['name']:<10} {g['identities']:>6} {g['images']:>6} {g['impostor_pairs']:>9} "
              f"{imp[-2] if imp else float('nan'):>10.4f} {tar:>8.3f}")
    for name, thresholds in rule["thresholds"].items():
        print(f"\n{name} rule, thresholds likely / certain: " + ", ".join(
            f"N={n}: {t['likely']:.3f} / {t['certain']:.3f}" for n, t in thresholds.items()))
        print(f"{'group':<10} wrongful refusal N=20 / 60 / 200   short ribbon N=60   "
              "repeat-takes N=60: refused / at least shortened")
        for g in s["groups"]:
            crowd = g["crowd"][name]
            mid = crowd[1] if len(crowd) > 1 else crowd[0]
            kind = "same-session" if mid["repeat_pairs_are_same_session"] else "all genuine"
            print(f"{g['name']:<10} " + " / ".join(_pct(c["wrongful_refusal"]) for c in crowd)
                  + f"   {_pct(mid['short_ribbon'])}   {_pct(mid['repeat_caught'])} / "
                  f"{_pct(mid['repeat_shortened_or_caught'])} ({kind})")
        print("worst group by N: " + ", ".join(
            f"N={n}: {g}" for n, g in s["worst_group_by_live_count"][name].items()))
    c = s["calibration"]
    if "no_tail" in c:
        print(f"\nno impostor tail recorded: {c['no_tail']}")
        return
    print(f"\nimpostor tail (worst group {c['worst_group']}, floor {c['floor']}): " + ", ".join(
        f"{far:.0e} at {cos:.3f}" for cos, far in zip(c["tail_cosine"], c["tail_far"],
                                                      strict=True)))

"""`dispenser compare IMG_A IMG_B`: are the largest faces in two photos the same person?

Prints the cosine similarity of the two templates and the verdict at the threshold the
store's rule applies with one live template (`dispenser.store.rule.threshold_for(1, ...)`:
same person when similarity >= threshold),
plus each face's quality verdict, since a poor photo makes a poor template. Never prints a
template, a landmark or image data. Exit codes: 0 compared (whatever the verdict), 2 bad
input, including an image in which no face is found.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dispenser import native_stderr
from dispenser.config import Settings
from dispenser.errors import EXIT_OK, EXIT_USAGE, DispenserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image_a", type=Path, metavar="IMG_A", help="first photo (any format "
                        "OpenCV reads: JPEG, PNG, TIFF, WebP, ...)")
    parser.add_argument("image_b", type=Path, metavar="IMG_B", help="second photo")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead "
                        "of text")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dispenser.store.rule import is_match, threshold_for
    from dispenser.vision.images import load_image_bgr
    from dispenser.vision.pipeline import FacePipeline

    threshold = threshold_for(1, settings)  # one pair: the rule with one live template
    templates = np.zeros((2, 128), np.float32)
    try:
        with FacePipeline(settings.vision) as pipe:
            reasons = []
            for row, path in enumerate((args.image_a, args.image_b)):
                with native_stderr.silenced():
                    image = load_image_bgr(path)
                face = pipe.embed_largest_face(image, templates[row])
                image.fill(0)
                if face is None:
                    raise DispenserError(f"no face found in {path} (faces must be at least "
                                         f"{settings.vision.min_face_px} px high)",
                                         exit_code=EXIT_USAGE)
                reasons.append(face.quality.reason)
        similarity = float(np.dot(templates[0], templates[1]))
    finally:
        templates.fill(0)
    same = is_match(similarity, threshold)
    if args.json:
        print(json.dumps({"similarity": round(similarity, 6), "same_person": same,
                          "threshold": threshold,
                          "quality": {"image_a": reasons[0], "image_b": reasons[1]}}))
    else:
        verdict = "same person" if same else "different people"
        print(f"similarity {similarity:.4f}: {verdict} (threshold {threshold:g})")
        for label, reason in zip(("IMG_A", "IMG_B"), reasons, strict=True):
            if reason != "ok":
                print(f"note: the face in {label} fails the camera quality gate ({reason}); "
                      "the comparison is less reliable")
    return EXIT_OK

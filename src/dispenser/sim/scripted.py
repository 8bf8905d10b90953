"""The built-in story of `dispenser simulate`: scripted visitors with synthetic templates.

No face images ship with the project, so the default run replaces the *camera and the
vision pipeline* (and only those) with stand-ins:

- `SyntheticCamera` draws each frame of the script: a grey background and, for every
  visitor in view, a flat face-sized rectangle. The rectangle's pixels carry the visit's
  number (red channel 255 marks a face, green/blue hold the number), so the stand-in can
  find it again, like a detector would, from the frame alone.
- `SyntheticVision` follows the pipeline contract (`detect`, `embed`): it returns a real
  `dispenser.vision.Face` for every rectangle (box, score, landmarks at fixed places in the
  box, quality ok), and writes that visit's synthetic template (`dispenser.sim.identities`)
  into the service's buffer.

Everything after that is the real code: the real `FaceTracker`, the service's hold-still
and state machine, the real `TemplateStore` and the real `MotorLink` over a pty to
firmware_sim. The scripted visitors are *typical* people (median visit-to-visit noise), so
the story does not depend on a lucky draw; the crowd mode draws the full distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dispenser.config import Settings
from dispenser.sim.identities import IdentityModel, Population
from dispenser.vision import Face, QualityReport

FRAME_W, FRAME_H = 320, 240
_BACKGROUND = 40
_FACE_MARK = 255
_BOX_W, _BOX_H = 96, 120
# Where landmarks sit inside a face box (fractions): eyes, nose, mouth corners.
_LANDMARKS = np.array([[0.32, 0.40], [0.68, 0.40], [0.50, 0.58], [0.36, 0.76], [0.64, 0.76]],
                      dtype=np.float32)


@dataclass(frozen=True)
class ScriptedVisit:
    """One visitor in the script. Times are seconds from the start of the run."""

    who: str            # a name for the timeline ("visitor A")
    person: int         # identity (population index); the same person keeps it
    at_s: float         # steps in front of the camera
    stay_s: float       # stays this long
    expect: str         # what the machine should do: "served", "denied" or "button"
    note: str           # why, for the timeline
    button: bool = False  # presses the no-scan button and does not look at the camera

    def in_view(self, t: float) -> bool:
        return not self.button and self.at_s <= t < self.at_s + self.stay_s


def default_script(settings: Settings) -> list[ScriptedVisit]:
    """The README's story, timed from the configured deny window and retention:
    A and B are served, A is refused on coming back within the deny window, C uses the
    no-scan button, A is served again after the window, and then the run continues until
    every template has been deleted at the retention limit."""
    window = settings.store.deny_window_s
    stay = settings.vision.hold_still_s + settings.dispense.ribbon_mm / 150.0 + 4.0
    a_served = 5.0 + stay
    return [
        ScriptedVisit("visitor A", 0, 5.0, stay, "served", "first visit"),
        ScriptedVisit("visitor B", 1, 40.0, stay, "served", "first visit"),
        ScriptedVisit("visitor A", 0, 90.0, stay, "denied",
                      f"back after {90 - a_served:.0f} s, inside the {window:g} s deny window"),
        ScriptedVisit("visitor C", 2, 150.0, 5.0, "button",
                      "presses the no-scan button, does not look", button=True),
        ScriptedVisit("visitor A", 0, a_served + window + 15.0, stay, "served",
                      f"back after {window + 15:.0f} s, past the deny window"),
    ]


def script_end(script: list[ScriptedVisit], settings: Settings) -> float:
    """When the story is over: the last visit's template has reached retention and the
    sweeper has run."""
    last = max(v.at_s + v.stay_s for v in script)
    return last + settings.store.retention_s + 2 * settings.store.sweep_period_s + 5.0


class SyntheticCamera:
    """Draws the scripted scene at a given time (frames carry visit numbers, no faces)."""

    def __init__(self, script: list[ScriptedVisit]) -> None:
        self._script = script

    def visible(self, t: float) -> list[int]:
        """Indices (visit numbers) of the visits in front of the camera at `t`."""
        return [i for i, v in enumerate(self._script) if v.in_view(t)]

    def frame(self, t: float) -> np.ndarray:
        image = np.full((FRAME_H, FRAME_W, 3), _BACKGROUND, np.uint8)
        for slot, visit in enumerate(self.visible(t)):
            x0 = (FRAME_W - _BOX_W) // 2 + slot * (_BOX_W + 8)
            y0 = (FRAME_H - _BOX_H) // 2
            box = image[y0:y0 + _BOX_H, x0:x0 + _BOX_W]
            box[..., 0] = visit // 256        # OpenCV order: blue, green, red
            box[..., 1] = visit % 256
            box[..., 2] = _FACE_MARK
        return image


class SyntheticVision:
    """The vision stand-in (see the module docstring): frames of `SyntheticCamera` in,
    real `Face` objects and synthetic templates out."""

    def __init__(self, script: list[ScriptedVisit], model: IdentityModel, seed: int) -> None:
        population = Population(model, seed)
        rng = np.random.default_rng([seed, 0x5C])
        # One scan per visit, drawn up front: the hold-still averages identical frames.
        self._templates = [population.typical_template(v.person, rng) for v in script]

    def detect(self, frame_bgr: np.ndarray) -> list[Face]:
        marked = frame_bgr[..., 2] == _FACE_MARK
        if not marked.any():
            return []
        codes = frame_bgr[..., 0].astype(np.int64) * 256 + frame_bgr[..., 1]
        faces = []
        for code in np.unique(codes[marked]):
            ys, xs = np.nonzero(marked & (codes == code))
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            size = np.array([box[2] - box[0], box[3] - box[1]], np.float32)
            landmarks = np.array(box[:2], np.float32) + _LANDMARKS * size
            faces.append(_SyntheticFace(box=box, score=0.99, landmarks=landmarks,
                                        quality=QualityReport(ok=True, reason="ok"),
                                        visit=int(code)))
        faces.sort(key=lambda f: -f.area)
        return list(faces)

    def embed(self, frame_bgr: np.ndarray, face: Face, out: np.ndarray) -> None:
        if not isinstance(face, _SyntheticFace) or not 0 <= face.visit < len(self._templates):
            raise ValueError("not a face of the synthetic camera")
        out[:] = self._templates[face.visit]

    def scrub(self) -> None:
        """Nothing to overwrite: the stand-in runs no network."""


@dataclass(frozen=True, eq=False)
class _SyntheticFace(Face):
    """A `Face` that remembers which scripted visit drew it (the stand-in's 'identity')."""

    visit: int = -1

"""The Python API: find faces, compare them and keep a deny-window store from your own code.

    import dispenser

    a = dispenser.face_templates(dispenser.load_image("a.jpg"))[0]
    b = dispenser.face_templates(dispenser.load_image("b.jpg"))[0]
    dispenser.similarity(a.template, b.template), dispenser.is_same(a.template, b.template)

Everything here is re-exported by `dispenser` and does what the device does: the same
models, the same match rule (`dispenser.store.rule`), the same RAM-only store.
Settings default to the laptop defaults; pass `settings=dispenser.config.load_settings(path)`
for a configuration file.

A template is identity data. It stays in RAM: never print, log or save it, and overwrite it
with zeros when you are done (`template.fill(0)`), as the device does. `FaceTemplate`'s repr
leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from dispenser.clock import BootClock, Clock
from dispenser.config import Settings
from dispenser.embedders import TEMPLATE_DIM
from dispenser.errors import DispenserError
from dispenser.store import TemplateStore as _Store
from dispenser.store.rule import is_match, rule_for, threshold_for
from dispenser.vision import FacePipeline, QualityReport
from dispenser.vision.images import load_image_bgr

Template = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class FaceTemplate:
    """One face found in an image: where it is, how usable the photo is, and its template."""

    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    quality: QualityReport  # the camera's quality gate; `quality.reason` is "ok" or why not
    template: Template = field(repr=False)  # float32 (128,), L2-normalised: yours to zeroise


def load_image(path: str | Path) -> Image:
    """An image file (JPEG, PNG, TIFF, WebP, ...) as an HxWx3 uint8 BGR array. A missing,
    empty, oversized or undecodable file raises DispenserError with one line saying which."""
    return load_image_bgr(path)


def face_templates(image: Image, *, settings: Settings | None = None) -> list[FaceTemplate]:
    """Every face in `image` (BGR, as `load_image` gives), largest first, with its quality
    verdict and template; [] when there is none.

    The models are loaded for this call and their buffers zeroised when it returns (a few
    tenths of a second); for a stream of frames use `dispenser.vision.FacePipeline`.
    """
    vision = (settings or Settings()).vision
    with FacePipeline(vision) as pipeline:
        found = []
        for face in pipeline.detect(image):
            template = np.zeros(TEMPLATE_DIM, np.float32)
            pipeline.embed(image, face, template)
            found.append(FaceTemplate(face.box, face.quality, template))
    return found


def similarity(a: Template, b: Template) -> float:
    """Cosine similarity of two templates (they are L2-normalised, so their dot product),
    from -1 to 1; the same person scores high."""
    for name, t in (("a", a), ("b", b)):
        if not (isinstance(t, np.ndarray) and t.shape == (TEMPLATE_DIM,)):
            raise DispenserError(f"similarity: {name} is not a template (a float32 array of "
                                 f"shape ({TEMPLATE_DIM},))")
    return float(np.dot(a.astype(np.float64), b.astype(np.float64)))


def pairwise_threshold(settings: Settings) -> float:
    """The threshold `is_same` compares one pair against: the decision rule's threshold with
    one live template (`match.threshold` when set), as `dispenser compare` uses."""
    return threshold_for(1, settings)


def is_same(a: Template, b: Template, *, settings: Settings | None = None) -> bool:
    """Are `a` and `b` the same person? The device's match rule at the pairwise threshold."""
    return is_match(similarity(a, b), pairwise_threshold(settings or Settings()))


class TemplateStore(_Store):
    """The device's template store (`dispenser.store.TemplateStore`: RAM only, deny window,
    deletion at the retention limit by its own sweeper thread) with the configuration's
    store settings and decision rule, on the board's clock unless you pass one.

    `decide(template)` refuses a template served within the deny window (`.dispense` is
    False), otherwise reserves it; `commit(reservation)` once the paper went out. `decide`
    zeroises the template it is given unless `keep_probe=True`. Use it as a context
    manager: closing zeroises it all.
    """

    def __init__(self, settings: Settings | None = None, *, clock: Clock | None = None,
                 start_sweeper: bool = True, zeroise_on_signals: bool = True) -> None:
        s = settings or Settings()
        super().__init__(s.store, rule=rule_for(s), dim=TEMPLATE_DIM,
                         clock=clock if clock is not None else BootClock(),
                         start_sweeper=start_sweeper, zeroise_on_signals=zeroise_on_signals)

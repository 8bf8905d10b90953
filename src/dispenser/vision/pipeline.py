"""Camera frame -> faces with a quality verdict -> one L2-normalised template.

`FacePipeline` is the vision part's whole public surface for the service: it loads and
hash-checks the detector and embedder models once, then per frame

    faces = pipe.detect(frame_bgr)          # boxes, scores, landmarks, quality verdicts
    pipe.embed(frame_bgr, face, template)   # align + embed into the caller's buffer

Where face pixels live: the RGB copy of the frame and the grey copy for the quality gate
are held in buffers allocated once per frame size, locked against swap where the OS
allows, and overwritten with zeros after every call (also on error); so is the 150x150
chip. The template is written only into the caller's array. Nothing here logs a frame,
crop, landmark set or template. The embedder's own activations of the faces are
overwritten by `scrub()`, which the caller runs once per decision (after its last
`embed`); `embed_largest_face` and `close` scrub before returning.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np
import numpy.typing as npt

from dispenser.errors import DispenserError
from dispenser.privacy.memory import locked_buffer, unlock_pages, zeroise
from dispenser.vision.align import Aligner, aligner_for, default_shape_predictor
from dispenser.vision.detector import Detection, MtcnnDetector
from dispenser.vision.face import Face
from dispenser.vision.images import to_bgr8
from dispenser.vision.quality import assess_faces

if TYPE_CHECKING:
    from dispenser.config import VisionSettings


class DetectorLike(Protocol):
    def detect(self, rgb: npt.NDArray[np.uint8]) -> list[Detection]: ...


class EmbedderLike(Protocol):
    card: Any  # its ModelCard: the chip geometry ([alignment]) and input shape
    chip_shape: tuple[int, int, int]

    def embed(self, chip: npt.NDArray[np.uint8], out: npt.NDArray[np.float32]) -> None: ...

    def scrub(self) -> None: ...


class _Scratch:
    """A reusable, swap-locked image buffer that is resized only when the frame size changes."""

    def __init__(self, channels: int) -> None:
        self._channels = channels
        self._buf: npt.NDArray[np.uint8] = np.zeros(0, np.uint8)

    def get(self, height: int, width: int) -> npt.NDArray[np.uint8]:
        shape = (height, width, self._channels) if self._channels > 1 else (height, width)
        if self._buf.shape != shape:
            self.release()
            self._buf = locked_buffer(shape, np.uint8)
        return self._buf

    def clear(self) -> None:
        zeroise(self._buf)

    def release(self) -> None:
        zeroise(self._buf)
        unlock_pages(self._buf)


class FacePipeline:
    """Detector + quality gate + alignment + embedder, loaded once. One caller at a time."""

    def __init__(self, vision: VisionSettings, threads: int | None = None, *,
                 detector: DetectorLike | None = None,
                 embedder: EmbedderLike | None = None) -> None:
        threads = vision.threads if threads is None else threads
        if detector is None:
            detector = MtcnnDetector(min_face_px=vision.min_face_px,
                                     max_side_px=vision.detect_max_side_px, threads=threads)
        if embedder is None:
            from dispenser.embedders import embedder_card
            from dispenser.vision.embedder import Embedder

            embedder = Embedder(threads=threads, model=embedder_card(
                vision.embedder, vision.embedder_precision))
        self._detector = detector
        self._embedder = embedder
        self._align: Aligner = aligner_for(embedder.card)
        if embedder.card.sections.get("alignment", {}).get("kind") == "dlib_face_chip":
            # Load, hash-check and compile the landmark model now, not on the first face.
            default_shape_predictor()
        self._rgb = _Scratch(3)
        self._grey = _Scratch(1)
        self._chip = locked_buffer(embedder.chip_shape, np.uint8)

    def detect(self, frame_bgr: Any) -> list[Face]:
        """Faces in an 8-bit BGR frame, largest first, each with its quality verdict.

        An empty frame gives []; a frame that is not an image raises one DispenserError
        line. Grey, BGRA and 16-bit frames are converted (dispenser.vision.images.to_bgr8).
        """
        frame = to_bgr8(frame_bgr, "camera frame")
        if frame is None:
            return []
        height, width = frame.shape[:2]
        rgb, grey = self._rgb.get(height, width), self._grey.get(height, width)
        try:
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=rgb)
            detections = self._detector.detect(rgb)
            if not detections:
                return []
            cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=grey)
            reports = assess_faces(grey, detections)
        finally:
            self._rgb.clear()
            self._grey.clear()
            if frame is not frame_bgr:
                zeroise(frame)  # our converted copy of the caller's frame
        faces = [Face(box=d.box, score=d.score, landmarks=d.landmarks, quality=q)
                 for d, q in zip(detections, reports, strict=True)]
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def embed(self, frame_bgr: Any, face: Face, out: npt.NDArray[np.float32]) -> None:
        """Write the L2-normalised template of `face` (found in this frame) into `out`.

        out: float32 (template size,), owned by the caller. The chip and the RGB copy are zeroised
        before this returns, whether it succeeds or not; call `scrub()` once the decision
        this face serves is made.
        """
        frame = to_bgr8(frame_bgr, "camera frame")
        if frame is None:
            raise DispenserError("camera frame is empty; nothing to embed")
        height, width = frame.shape[:2]
        rgb = self._rgb.get(height, width)
        try:
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=rgb)
            self._align(rgb, face.box, face.landmarks, self._chip)
            self._embedder.embed(self._chip, out)
        finally:
            zeroise(self._chip)
            self._rgb.clear()
            if frame is not frame_bgr:
                zeroise(frame)

    def embed_largest_face(self, frame_bgr: Any, out: npt.NDArray[np.float32]) -> Face | None:
        """Template of the largest face in a photo into `out`; None (out untouched) if there
        is no face. For still photos (`compare`, `calibrate`): the largest face is the
        subject, and the quality gate is reported, not enforced (photos are not the camera
        the gate was tuned for; the caller shows `face.quality`)."""
        faces = self.detect(frame_bgr)
        if not faces:
            return None
        try:
            self.embed(frame_bgr, faces[0], out)
        finally:
            self.scrub()
        return faces[0]

    def scrub(self) -> None:
        """Overwrite the embedder's activations of every face embedded since the last
        scrub (a no-op when there was none): once per decision, after its last `embed`."""
        self._embedder.scrub()

    def close(self) -> None:
        """Scrub the embedder, and zeroise and unlock every buffer this pipeline holds."""
        self.scrub()
        self._rgb.release()
        self._grey.release()
        zeroise(self._chip)
        unlock_pages(self._chip)

    def __enter__(self) -> FacePipeline:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

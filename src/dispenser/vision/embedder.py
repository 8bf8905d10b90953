"""Aligned face chip -> L2-normalised identity template, with onnxruntime.

Two embedders ship (`vision.embedder`): SFace, the default (models/
face_recognition_sface_2021dec.toml: 112x112 chips, 128-d), and dlib's face-recognition
ResNet (models/dlib_face_recognition_resnet_model_v1.toml: dlib's 150x150 chips, 128-d),
kept for comparison; docs/vision.md has the measurements that chose SFace. Both take the
raw uint8 RGB chip their card describes (normalisation happens inside the graph) and give
a raw descriptor, which this class L2-normalises so that templates compare by cosine
similarity (a dot product).

Where the face data lives (so that it can be zeroised): the chip is copied into an input
array this class owns, the network writes its descriptor into an output array this class
owns (both bound with onnxruntime I/O binding, so onnxruntime reads and writes those exact
bytes rather than arrays it allocates), and the template is written into the caller's
buffer. Both owned arrays are overwritten with zeros after every call, even a failed one.
onnxruntime's own intermediate activations of the face stay in its memory arena (which
nothing clears) until `scrub()` runs the network once on a zeroed chip, overwriting them:
the caller scrubs once per decision (after its last embedding, whether the decision was
made or not), `embed_batch` and `close()` scrub before returning. One scrub per decision,
not one per face, keeps the embedder's cost at one network run per face.

The session comes from `dispenser.vision.ort_session.create_session` (intra-op threads =
settings.vision.threads, inter-op 1, sequential, ORT_ENABLE_ALL, CPU memory arena on). For
this network in particular: ORT_ENABLE_ALL folds each affine (Mul+Add) into the preceding
Conv and fuses the ReLUs; the arena plus onnxruntime's default memory pattern reuse the
same blocks for every face (shapes are fixed), so no allocation happens per face. Turning
the arena off would not clear freed memory either (it returns to malloc unzeroed), so it
buys no privacy. The owned buffers are locked against swap where the OS allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dispenser.embedders import EMBEDDER_CARDS, embedder_card
from dispenser.errors import DispenserError
from dispenser.privacy.memory import locked_buffer, zeroise
from dispenser.vision.model_files import ModelCard, load_card, read_verified_model
from dispenser.vision.ort_session import create_session

if TYPE_CHECKING:
    from dispenser.config import VisionSettings

SFACE_MODEL = EMBEDDER_CARDS["sface"]
DLIB_MODEL = EMBEDDER_CARDS["dlib"]


def _check_array(value: object, what: str, shape: tuple[int, ...], dtype: type, *,
                 writeable: bool = False, shown_shape: str | None = None) -> None:
    """Pass if `value` is an ndarray of exactly this shape and dtype, else a one-line error."""
    if not isinstance(value, np.ndarray):
        raise DispenserError(f"{what} must be a numpy array, got {type(value).__name__}")
    if value.shape != shape or value.dtype != dtype:
        raise DispenserError(f"{what} must be {np.dtype(dtype).name} with shape "
                             f"{shown_shape or shape}, got {value.dtype.name} with shape "
                             f"{value.shape}")
    if writeable and not value.flags.writeable:
        raise DispenserError(f"{what} is read-only")


# onnxruntime names element types after ONNX (tensor(float)); cards use numpy names.
_ORT_TYPE_NAMES = {"float32": "float", "float64": "double"}


def check_session_io(session: Any, card: ModelCard) -> None:
    """Refuse a session whose inputs or outputs are not what the card promises."""
    for kind, declared, actual in (("input", card.inputs, session.get_inputs()),
                                   ("output", card.outputs, session.get_outputs())):
        found = [(a.name, a.type, tuple(a.shape)) for a in actual]
        wanted = [(s.name, f"tensor({_ORT_TYPE_NAMES.get(s.dtype, s.dtype)})", s.shape)
                  for s in declared]
        if found != wanted:
            raise DispenserError(f"model {card.file}: {kind}s {found} do not match its card "
                                 f"{wanted}")


class Embedder:
    """One onnxruntime session of the face embedder and the buffers it reads and writes.

    `embed` handles one chip (the device path); `embed_batch` handles many in chunks of up
    to `batch_capacity` (calibration). Not thread-safe: one caller at a time.
    """

    def __init__(self, threads: int = 2, *, model: str = SFACE_MODEL,
                 model_path: Path | None = None, card_path: Path | None = None,
                 batch_capacity: int = 8) -> None:
        if batch_capacity < 1:
            raise DispenserError(
                f"embedder batch_capacity must be at least 1, got {batch_capacity}")
        self.card = load_card(model, card_path)
        self._session = create_session(read_verified_model(self.card, model_path),
                                       threads=threads, name=self.card.file)
        check_session_io(self._session, self.card)
        chip_spec, out_spec = self.card.inputs[0], self.card.outputs[0]
        rows, cols, channels = (int(d) for d in chip_spec.shape[1:])
        self.chip_shape = (rows, cols, channels)
        self.template_size = int(out_spec.shape[1])
        self.batch_capacity = batch_capacity
        self._input_name, self._output_name = chip_spec.name, out_spec.name
        # The only arrays onnxruntime reads the chip from and writes the descriptor to.
        self._chips = locked_buffer((batch_capacity, *self.chip_shape), np.uint8)
        self._descriptors = locked_buffer((batch_capacity, self.template_size), np.float32)
        self._bindings: dict[int, Any] = {}
        self._unscrubbed: set[int] = set()  # batch sizes run on faces since the last scrub

    @classmethod
    def from_settings(cls, vision: VisionSettings) -> Embedder:
        """The embedder as configured (`vision.threads`, `.embedder`, `.embedder_precision`)."""
        return cls(threads=vision.threads,
                   model=embedder_card(vision.embedder, vision.embedder_precision))

    def _binding(self, n: int) -> Any:
        """An I/O binding of the first `n` rows of the owned buffers (made once per n).

        A new binding is run once on the zeroed buffers before any face goes through it:
        onnxruntime plans its memory pattern on the first run of a shape, so from then on
        every run of that shape puts each activation at the same place, which is what lets
        `scrub` overwrite them.
        """
        binding = self._bindings.get(n)
        if binding is None:
            from onnxruntime import OrtValue

            binding = self._session.io_binding()
            binding.bind_ortvalue_input(self._input_name,
                                        OrtValue.ortvalue_from_numpy(self._chips[:n]))
            binding.bind_ortvalue_output(self._output_name,
                                         OrtValue.ortvalue_from_numpy(self._descriptors[:n]))
            self._bindings[n] = binding
            self._run_on_zeros(binding)
        return binding

    def _run_on_zeros(self, binding: Any) -> None:
        """Zeroise the owned buffers and run the network on them (all-black chips)."""
        self.zeroise()
        self._session.run_with_iobinding(binding)
        self.zeroise()

    def scrub(self) -> None:
        """Overwrite onnxruntime's intermediate activations of every face embedded since
        the last scrub with those of a black chip (one run per batch size used).

        Without it they stay in onnxruntime's memory until the next face, however long
        that takes; among them are the pooled features from which the template is one
        matrix product away (tests/vision/test_embedder.py scans the process memory for
        them). Cheap when nothing was embedded since the last scrub (no run).
        """
        while self._unscrubbed:
            self._run_on_zeros(self._bindings[self._unscrubbed.pop()])

    def _run_normalised(self, chips: np.ndarray, out: np.ndarray) -> None:
        """Embed len(chips) <= batch_capacity chips into `out`, then zeroise the owned
        buffers (onnxruntime's activations wait for `scrub`)."""
        n = len(chips)
        binding = self._binding(n)
        self._unscrubbed.add(n)
        try:
            np.copyto(self._chips[:n], chips)
            self._session.run_with_iobinding(binding)
            raw = self._descriptors[:n]
            norms = np.sqrt(np.einsum("ij,ij->i", raw, raw))
            if not np.all(np.isfinite(norms)) or not np.all(norms > 0):
                raise DispenserError("the embedder produced an unusable descriptor "
                                     "(zero or non-finite); the model file may be damaged")
            np.divide(raw, norms[:, None], out=out)
        finally:
            self.zeroise()

    def embed(self, chip: np.ndarray, out: np.ndarray) -> None:
        """Write the L2-normalised template of one aligned chip into `out`.

        chip: uint8 RGB `chip_shape` (the card's input), aligned as the card says.
        out:  float32 (template_size,), owned by the caller (who zeroises it when its time
              is up).
        The caller calls `scrub()` once the decision this face serves is made.
        """
        _check_array(chip, "face chip", self.chip_shape, np.uint8)
        _check_array(out, "template buffer", (self.template_size,), np.float32, writeable=True)
        self._run_normalised(chip[None], out[None])

    def embed_batch(self, chips: np.ndarray, out: np.ndarray) -> None:
        """Templates of chips (N, *chip_shape) uint8 into out (N, template_size), N >= 0;
        scrubbed before it returns (also on error)."""
        n = chips.shape[0] if isinstance(chips, np.ndarray) and chips.ndim == 4 else 0
        _check_array(chips, "face chips", (n, *self.chip_shape), np.uint8,
                     shown_shape=f"(N, {', '.join(map(str, self.chip_shape))})")
        _check_array(out, "template buffer", (n, self.template_size), np.float32,
                     writeable=True)
        try:
            for start in range(0, n, self.batch_capacity):
                stop = min(start + self.batch_capacity, n)
                self._run_normalised(chips[start:stop], out[start:stop])
        finally:
            self.scrub()

    def close(self) -> None:
        """Scrub onnxruntime's activations and zeroise the owned buffers."""
        self.scrub()
        self.zeroise()

    def zeroise(self) -> None:
        """Overwrite the chip and descriptor buffers onnxruntime reads and writes with zeros."""
        zeroise(self._chips)
        zeroise(self._descriptors)

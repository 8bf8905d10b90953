"""The MTCNN detector's own memory: reused, swap-locked buffers and the I/O bindings onto them.

Why: every image the cascade works on (the downscaled frame, the pyramid levels, the
normalised network inputs, the 24x24 and 48x48 face crops) and every network output (box
corrections, scores, landmarks) holds face data. If numpy, OpenCV or onnxruntime allocated
them per call, the freed memory would keep the face until something else happened to
reuse it. So each lives in a buffer this module allocates once (per frame size for the
pyramid), locks against swap (`dispenser.privacy.memory.locked_buffer`) and the detector
zeroises after every `detect()`; onnxruntime reads its inputs from and writes its outputs
into these buffers through I/O binding (`OrtValue.ortvalue_from_numpy` shares the numpy
memory, it does not copy it).

Buffers are flat arrays handed out as C-contiguous views (`flat[:n].reshape(shape)`), so
one allocation serves every pyramid level and every batch size, and `raw_buffers()` can
show a test or an auditor every byte the detector owns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from dispenser.privacy.memory import locked_buffer, unlock_pages, zeroise


class FlatBuffer:
    """One swap-locked flat array handed out as views of any shape that fits in it.

    `view` grows the array (never shrinks it) when a bigger shape is asked for: the old
    array is zeroised and unlocked first. Views taken before a growth point into the old
    array, so only unbound scratch (the crop patch) may grow after set-up.
    """

    def __init__(self, dtype: type[np.generic], size: int = 0) -> None:
        self._dtype = dtype
        self.raw: np.ndarray = locked_buffer((size,), dtype)

    def view(self, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        if size > self.raw.size:
            self.release()
            self.raw = locked_buffer((size,), self._dtype)
        return self.raw[:size].reshape(shape)

    def zeroise(self) -> None:
        zeroise(self.raw)

    def release(self) -> None:
        zeroise(self.raw)
        unlock_pages(self.raw)


def _bind(session: Any, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]
          ) -> Any:
    """An onnxruntime I/O binding that reads and writes exactly these numpy arrays."""
    from onnxruntime import OrtValue

    binding = session.io_binding()
    for name, array in inputs.items():
        binding.bind_ortvalue_input(name, OrtValue.ortvalue_from_numpy(array))
    for name, array in outputs.items():
        binding.bind_ortvalue_output(name, OrtValue.ortvalue_from_numpy(array))
    return binding


def normalise_into(dst: npt.NDArray[np.float32], image: npt.NDArray[np.uint8],
                   mean: float, scale: float) -> None:
    """dst = (image, spatial axes swapped - mean) * scale, computed in place in `dst`.

    No temporary array: the uint8 -> float32 cast is a strided copy into `dst` and the two
    arithmetic steps are in-place float32 operations (the same operations, in the same
    order, as the same float32 computation on freshly allocated arrays: bit-identical).
    """
    np.copyto(dst, image.swapaxes(-3, -2))
    dst -= mean
    dst *= scale


class PyramidLevel:
    """One P-Net pyramid level: its scale and size, and views of the owned buffers."""

    def __init__(self, scale: float, width: int, height: int, image: np.ndarray,
                 net_input: np.ndarray, outputs: dict[str, np.ndarray], binding: Any) -> None:
        self.scale, self.width, self.height = scale, width, height
        self.image = image          # (height, width, 3) uint8, resampled from the level above
        self.net_input = net_input  # (1, width, height, 3) float32, normalised
        self.outputs = outputs      # P-Net's maps, (1, W', H', k) float32 each
        self.binding = binding


class PnetBuffers:
    """Buffers and bindings of P-Net for one working-image size (rebuilt when it changes).

    Two uint8 level images alternate (each level is resampled from the one above it); the
    first level, the largest, sets every size. P-Net's output map sizes are learnt by one
    plain run per level on the still all-zero input (a black image: no face data), which
    also lets onnxruntime plan its memory for each shape before a face goes through it.
    """

    def __init__(self, session: Any, input_name: str, output_names: list[str],
                 height: int, width: int, scales: list[float]) -> None:
        self.shape = (height, width)
        sizes = [(math.ceil(width * s), math.ceil(height * s)) for s in scales]
        largest = sizes[0][0] * sizes[0][1] * 3 if sizes else 0
        self._images = (FlatBuffer(np.uint8, largest), FlatBuffer(np.uint8, largest))
        self._input = FlatBuffer(np.float32, largest)
        shapes = []
        for (w, h) in sizes:
            zeros = self._input.view((1, w, h, 3))
            shapes.append([np.shape(out) for out in session.run(output_names, {input_name: zeros})])
        self._outputs = [FlatBuffer(np.float32, max((math.prod(s[k]) for s in shapes), default=0))
                         for k in range(len(output_names))]
        self.levels = []
        for i, (scale, (w, h), out_shapes) in enumerate(zip(scales, sizes, shapes, strict=True)):
            net_input = self._input.view((1, w, h, 3))
            outputs = {name: buf.view(tuple(s)) for name, buf, s
                       in zip(output_names, self._outputs, out_shapes, strict=True)}
            self.levels.append(PyramidLevel(
                scale, w, h, self._images[i % 2].view((h, w, 3)), net_input, outputs,
                _bind(session, {input_name: net_input}, outputs)))

    def raw_buffers(self) -> list[np.ndarray]:
        return [b.raw for b in (*self._images, self._input, *self._outputs)]

    def release(self) -> None:
        for buf in (*self._images, self._input, *self._outputs):
            buf.release()


class BatchBuffers:
    """R-Net's or O-Net's input batch and outputs, for up to `capacity` crops per run.

    Bindings are made once per batch size n (views of the first n rows), as the embedder
    does: a frame's candidates are run in chunks of `capacity`, so only the last chunk's
    size varies.
    """

    def __init__(self, input_name: str, output_names: list[str], output_widths: list[int],
                 size: int, capacity: int) -> None:
        self.capacity = capacity
        self._input_name = input_name
        self.crop = locked_buffer((size, size, 3), np.uint8)  # one resized crop, uint8
        self.net_input = locked_buffer((capacity, size, size, 3), np.float32)
        self.outputs = {name: locked_buffer((capacity, width), np.float32)
                        for name, width in zip(output_names, output_widths, strict=True)}
        self._bindings: dict[int, Any] = {}

    def binding(self, session: Any, n: int) -> Any:
        """The binding of `session` (always the same one) to the first n rows."""
        binding = self._bindings.get(n)
        if binding is None:
            binding = _bind(session, {self._input_name: self.net_input[:n]},
                            {name: out[:n] for name, out in self.outputs.items()})
            self._bindings[n] = binding
        return binding

    def raw_buffers(self) -> list[np.ndarray]:
        return [self.crop, self.net_input, *self.outputs.values()]

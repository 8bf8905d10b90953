"""What the service needs from the store, the vision pipeline, the tracker and the motor.

These protocols restate, for type checking, the parts of those modules the service calls,
so the service can be driven by the real modules (`dispenser run`, the simulator)
or by small fakes in tests without importing numba or onnxruntime. The real classes
(`TemplateStore`, `FacePipeline`, `FaceTracker`, `MotorLink`) satisfy them structurally.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class FaceLike(Protocol):
    @property
    def box(self) -> tuple[float, float, float, float]: ...

    @property
    def score(self) -> float: ...

    @property
    def quality(self) -> Any: ...          # has .ok: bool and .reason: str


class TrackLike(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def face(self) -> Any: ...              # a FaceLike

    @property
    def steady_s(self) -> float: ...

    @property
    def lost(self) -> bool: ...

    @property
    def missed(self) -> int: ...           # updates since its face was last detected


class PipelineLike(Protocol):
    def detect(self, frame_bgr: np.ndarray) -> list[Any]: ...

    def embed(self, frame_bgr: np.ndarray, face: Any, out: np.ndarray) -> None: ...

    def scrub(self) -> None: ...           # overwrite the embedder's activations of faces


class TrackerLike(Protocol):
    def update(self, faces: list[Any]) -> list[Any]: ...


class DecisionLike(Protocol):
    @property
    def dispense(self) -> bool: ...        # paper goes out (full or shorter ribbon)

    @property
    def short(self) -> bool: ...           # the shorter ribbon (a likely, not certain, match)

    @property
    def reservation(self) -> Any: ...


class StoreLike(Protocol):
    def decide(self, probe: np.ndarray) -> Any: ...   # returns a DecisionLike

    def commit(self, reservation: Any) -> bool: ...

    def rollback(self, reservation: Any) -> bool: ...

    def counters(self) -> Any: ...                    # a dataclass of ints


class DispenseResultLike(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def dispensed_mm(self) -> int: ...

    @property
    def error(self) -> str | None: ...


class MotorLike(Protocol):
    def dispense(self, length_mm: int) -> Any: ...     # returns a DispenseResultLike

    def state(self) -> Any: ...                        # a ControllerState (enum, .name)

    def button_presses(self) -> int: ...

"""Camera frame to identity template, on the device: detect, align, embed (ONNX models).

Each stage is a small class in its own module with explicit input geometry and no hidden
global state; the models and their cards are found through `dispenser.vision.model_files`.
Nothing in this package logs, prints or writes a frame, crop, landmark set or template.
"""

from dispenser.vision.face import Face, QualityReport
from dispenser.vision.pipeline import FacePipeline
from dispenser.vision.tracker import FaceTracker, Track

__all__ = ["Face", "FacePipeline", "FaceTracker", "QualityReport", "Track"]

"""dispenser: an open, auditable face-matching paper dispenser.

The package turns a face into an identity template on the device, compares it only with
the templates of people served in the last minutes (held in RAM), and hard-deletes every
template at the retention limit (by the next sweep, at most one sweep period later). See
README.md and docs/ for the guarantees and how they are tested.
"""

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The Python API (dispenser.api, README "Python API"), imported on first use so that
# `import dispenser` stays light for the CLI and the simulated controller.
__all__ = ["FaceTemplate", "TemplateStore", "__version__", "face_templates", "is_same",
           "load_image", "similarity"]

if TYPE_CHECKING:
    from dispenser.api import (
        FaceTemplate,
        TemplateStore,
        face_templates,
        is_same,
        load_image,
        similarity,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from dispenser import api

        return getattr(api, name)
    raise AttributeError(f"module 'dispenser' has no attribute {name!r}")

# onnxruntime >= 1.29 ships telemetry on Linux that resolves and contacts a Microsoft
# endpoint from native code (found by tests/privacy/test_guard_during_full_run.py under
# strace), out of reach of our Python audit hook. Its documented full opt-out must be set
# before onnxruntime is first imported, and every import of it in this program comes
# after this line. Forced, not defaulted: the device opens no network socket (invariant 5).
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

# Images larger than this many pixels are refused before decoding (dispenser.vision.images).
# OpenCV reads its own limit from the environment once, when cv2 is loaded; every import of
# cv2 in this program comes after this line, so its decoders refuse the same sizes too.
MAX_IMAGE_PIXELS = 50_000_000
os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(MAX_IMAGE_PIXELS)

# OpenCV and its ffmpeg backend write their own warnings straight to stderr ("moov atom not
# found", TIFF directory errors), ahead of the one line that says what was wrong; every
# failure they report reaches the user as that line (docs/operator.md). Both settings are
# read when OpenCV loads and when its ffmpeg backend starts, after this line; a developer
# may still set them (OPENCV_LOG_LEVEL=DEBUG, OPENCV_FFMPEG_LOGLEVEL=24) to see the output.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET

"""Image files and arrays of any common kind -> the 8-bit BGR frames the pipeline takes.

`dispenser compare` and `dispenser calibrate` read photos an operator supplies: they may be
truncated, empty, enormous, grey-scale, 16-bit, or carry an alpha channel. Each case ends
here as either a usable HxWx3 uint8 BGR array or one `DispenserError` line naming the file
and what was wrong; never a traceback, never a half-decoded image.

Files are read as bytes and decoded with `cv2.imdecode` (not `cv2.imread`, which returns
None without saying why). The pixel limit is checked on the PNG or JPEG header before
decoding, so a small file that claims to be a gigapixel image is refused without allocating
it, and again on the decoded array for every other format.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from dispenser.errors import DispenserError

MAX_FILE_BYTES: Final = 100 * 1024 * 1024
"""Larger files are refused before reading: no camera photo is this big."""

MAX_PIXELS: Final = 50_000_000
"""Larger decoded images are refused (a 50 MP BGR image is already 150 MB in RAM)."""

BGRImage = npt.NDArray[np.uint8]


def to_bgr8(image: Any, what: str) -> BGRImage | None:
    """`image` as HxWx3 uint8 BGR, converting what can be converted.

    Accepted: HxW or HxWx1 grey, HxWx3 BGR, HxWx4 BGRA (alpha dropped), in uint8, uint16
    (scaled down by 257) or float in [0, 1]. Returns None for an empty image (no pixels),
    raises a one-line DispenserError naming `what` for anything else. Returns `image`
    itself when it is already uint8 BGR (no copy).
    """
    if not isinstance(image, np.ndarray):
        raise DispenserError(f"{what} is not an image array ({type(image).__name__})")
    if image.size == 0:
        return None
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise DispenserError(f"{what} has shape {image.shape}; expected HxW grey, HxWx3 BGR "
                             "or HxWx4 BGRA")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise DispenserError(f"{what} has {image.shape[1]}x{image.shape[0]} pixels, more than "
                             f"the {MAX_PIXELS // 1_000_000} MP limit")
    u8 = _to_uint8(image, what)
    if u8.ndim == 2:
        return np.asarray(cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if u8.shape[2] == 4:
        return np.asarray(cv2.cvtColor(u8, cv2.COLOR_BGRA2BGR), dtype=np.uint8)
    return u8


def _to_uint8(image: npt.NDArray[Any], what: str) -> BGRImage:
    if image.dtype == np.uint8:
        return np.asarray(image, dtype=np.uint8)
    if image.dtype == np.uint16:
        return np.asarray(image // 257, dtype=np.uint8)
    if image.dtype in (np.float32, np.float64):
        if not np.all(np.isfinite(image)):
            raise DispenserError(f"{what} contains non-finite pixel values")
        return np.asarray(np.clip(image, 0.0, 1.0) * 255.0 + 0.5, dtype=np.uint8)
    raise DispenserError(f"{what} has pixel type {image.dtype}; expected uint8, uint16 or "
                         "float in [0, 1]")


_JPEG_SOF_MARKERS: Final = frozenset(
    {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) read from a PNG or JPEG header, None for other or unparsable data."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if not data.startswith(b"\xff\xd8"):
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xDA)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _JPEG_SOF_MARKERS and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return None


def load_image_bgr(path: str | Path) -> BGRImage:
    """Read and decode an image file into HxWx3 uint8 BGR, or raise one DispenserError line."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DispenserError(f"image {p} is {size} bytes, more than the "
                                 f"{MAX_FILE_BYTES // (1024 * 1024)} MiB limit")
        data = p.read_bytes()
    except FileNotFoundError:
        raise DispenserError(f"image {p} does not exist") from None
    except IsADirectoryError:
        raise DispenserError(f"image {p} is a directory") from None
    except OSError as exc:
        raise DispenserError(f"image {p} cannot be read: {exc.strerror}") from None
    if not data:
        raise DispenserError(f"image {p} is empty (0 bytes)")
    claimed = header_size(data)
    if claimed is not None and claimed[0] * claimed[1] > MAX_PIXELS:
        raise DispenserError(f"image {p} is {claimed[0]}x{claimed[1]} pixels, more than the "
                             f"{MAX_PIXELS // 1_000_000} MP limit")
    buffer = np.frombuffer(data, np.uint8)
    try:
        # IMREAD_UNCHANGED keeps 16-bit depth and alpha for to_bgr8 to handle explicitly;
        # IGNORE_ORIENTATION is off on purpose: phone photos carry their rotation in EXIF.
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        decoded = None
    if decoded is None:
        raise DispenserError(f"image {p} is not a readable image (corrupt, truncated or an "
                             "unsupported format)")
    if decoded.ndim == 3 and decoded.shape[2] in (3, 4) and decoded.dtype == np.uint8:
        # IMREAD_UNCHANGED skips EXIF rotation; re-decode colour images with it applied.
        rotated = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        if rotated is not None:
            decoded = rotated
    image = to_bgr8(decoded, f"image {p}")
    if image is None:
        raise DispenserError(f"image {p} has no pixels")
    return image

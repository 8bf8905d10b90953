"""Image files and arrays of any common kind -> the 8-bit BGR frames the pipeline takes.

`dispenser compare` and `dispenser calibrate` read photos an operator supplies: they may be
truncated, empty, enormous, grey-scale, 16-bit, or carry an alpha channel. Each case ends
here as either a usable HxWx3 uint8 BGR array or one `DispenserError` line naming the file
and what was wrong; never a traceback, never a half-decoded image.

`load_image_bgr` is the one way this program reads an image file: `compare`, `calibrate`
and the image-folder frame source (`run --source DIR`, `simulate --images DIR`) all use it.
Files are read as bytes and decoded with `cv2.imdecode` (not `cv2.imread`, which returns
None without saying why). Only formats whose header this module reads (PNG, JPEG, TIFF,
BMP, WebP, PNM) are decoded, and the pixel limit is checked on that header *before*
decoding, so a small file that claims to be a gigapixel image is refused without
allocating it (a decompression bomb). OpenCV's own limit (`OPENCV_IO_MAX_IMAGE_PIXELS`,
read once when cv2 loads) is set to the same value by `dispenser/__init__.py` as a second
line, and the decoded array is checked again.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Final

import cv2
import numpy as np
import numpy.typing as npt

from dispenser import MAX_IMAGE_PIXELS
from dispenser.errors import DispenserError

MAX_FILE_BYTES: Final = 100 * 1024 * 1024
"""Larger files are refused before reading: no camera photo is this big."""

MAX_PIXELS: Final = MAX_IMAGE_PIXELS
"""Larger images are refused (a 50 MP BGR image is already 150 MB in RAM)."""

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

IMAGE_FORMATS: Final = "PNG, JPEG, TIFF, BMP, WebP or PNM"
"""The formats whose size `header_size` reads; no other is ever handed to a decoder."""

IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp",
                         ".pbm", ".pgm", ".ppm", ".pnm")
"""File names an image folder source picks up (the content decides the format)."""


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, TIFF, BMP, WebP or PNM file; None for
    any other format or a header that cannot be read."""
    try:
        for reader in (_png_size, _jpeg_size, _tiff_size, _bmp_size, _webp_size, _pnm_size):
            size = reader(data)
            if size is not None:
                return size
    except (struct.error, ValueError, IndexError):
        return None
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
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
        if marker in _JPEG_SOF_MARKERS:
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            return int(width), int(height)
        pos += 2 + length
    return None


_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257
# TIFF field types that can hold a dimension: SHORT, LONG, LONG8 (BigTIFF).
_TIFF_INT_FORMATS: Final = {3: "H", 4: "I", 16: "Q"}


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of the first image (the one a decoder reads), classic or BigTIFF."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None:
        return None
    (magic,) = struct.unpack(order + "H", data[2:4])
    if magic == 42:
        (ifd,) = struct.unpack(order + "I", data[4:8])
        count_format, entry_size, value_at, count_size = "H", 12, 8, 2
    elif magic == 43:
        (ifd,) = struct.unpack(order + "Q", data[8:16])
        count_format, entry_size, value_at, count_size = "Q", 20, 12, 8
    else:
        return None
    (entries,) = struct.unpack(order + count_format, data[ifd:ifd + count_size])
    found: dict[int, int] = {}
    for i in range(min(entries, 4096)):
        at = ifd + count_size + i * entry_size
        tag, kind = struct.unpack(order + "HH", data[at:at + 4])
        if tag in (_TIFF_WIDTH, _TIFF_HEIGHT) and kind in _TIFF_INT_FORMATS:
            fmt = order + _TIFF_INT_FORMATS[kind]
            (found[tag],) = struct.unpack_from(fmt, data, at + value_at)
    if _TIFF_WIDTH in found and _TIFF_HEIGHT in found:
        return found[_TIFF_WIDTH], found[_TIFF_HEIGHT]
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if not data.startswith(b"BM"):
        return None
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:  # OS/2 BITMAPCOREHEADER
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(int(width)), abs(int(height))  # a negative height is a top-down bitmap


def _webp_size(data: bytes) -> tuple[int, int] | None:
    if not (data.startswith(b"RIFF") and data[8:12] == b"WEBP"):
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 3 or data[0:1] != b"P" or data[1:2] not in b"123456":
        return None
    numbers: list[int] = []
    for line in data[2:256].split(b"\n"):
        for word in line.split(b"#", 1)[0].split():
            numbers.append(int(word))
            if len(numbers) == 2:
                return numbers[0], numbers[1]
    return None


def check_image_header(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file the loader would decode, read from its header;
    one DispenserError line naming the file when it is missing, empty, too big, not a
    supported format, or claims more than `MAX_PIXELS`. Nothing is decoded."""
    return _checked_file(Path(path))[1]


def _checked_file(p: Path) -> tuple[bytes, tuple[int, int]]:
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
    if claimed is None:
        raise DispenserError(f"image {p} is not a {IMAGE_FORMATS} file (or its header is "
                             "damaged)")
    if claimed[0] * claimed[1] > MAX_PIXELS:
        raise DispenserError(f"image {p} is {claimed[0]}x{claimed[1]} pixels, more than the "
                             f"{MAX_PIXELS // 1_000_000} MP limit")
    return data, claimed


def load_image_bgr(path: str | Path) -> BGRImage:
    """Read and decode an image file into HxWx3 uint8 BGR, or raise one DispenserError line."""
    p = Path(path)
    data, _ = _checked_file(p)
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
            decoded.fill(0)  # the unrotated copy of the picture goes
            decoded = rotated
    image = to_bgr8(decoded, f"image {p}")
    if image is None:
        raise DispenserError(f"image {p} has no pixels")
    return image

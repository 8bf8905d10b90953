"""Image files of every awkward kind -> a BGR uint8 array or one clear error line."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.errors import DispenserError
from dispenser.vision.images import (
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    header_size,
    load_image_bgr,
    to_bgr8,
)


def _write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I",
                                                                  zlib.crc32(kind + body))


def test_colour_grey_16bit_and_alpha_files_all_load_as_bgr(tmp_path: Path,
                                                           astronaut_bgr: np.ndarray) -> None:
    grey = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    files = {
        "colour.png": astronaut_bgr,
        "colour.jpg": astronaut_bgr,
        "grey.png": grey,
        "deep.png": astronaut_bgr.astype(np.uint16) * 257,
        "alpha.png": cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2BGRA),
        "deep_grey.tiff": grey.astype(np.uint16) * 257,
    }
    for name, pixels in files.items():
        image = load_image_bgr(_write(tmp_path / name, pixels))
        assert image.shape == (512, 512, 3) and image.dtype == np.uint8, name
    np.testing.assert_array_equal(load_image_bgr(tmp_path / "deep.png"), astronaut_bgr)
    np.testing.assert_array_equal(load_image_bgr(tmp_path / "alpha.png"), astronaut_bgr)


@pytest.mark.parametrize(("content", "match"), [
    (b"", "empty"),
    (b"this is not an image", "is not a PNG, JPEG, TIFF, BMP, WebP or PNM file"),
    (b"\xff\xd8\xff\xe0garbage", "its header is damaged"),
])
def test_bad_files_are_one_line_errors(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(DispenserError, match=match) as info:
        load_image_bgr(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_file_is_refused(tmp_path: Path, astronaut_bgr: np.ndarray) -> None:
    whole = _write(tmp_path / "whole.png", astronaut_bgr).read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole[:len(whole) // 3])
    with pytest.raises(DispenserError, match="not a readable image"):
        load_image_bgr(cut)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DispenserError, match="does not exist"):
        load_image_bgr(tmp_path / "nope.png")
    with pytest.raises(DispenserError, match="is a directory"):
        load_image_bgr(tmp_path)


def test_a_huge_claimed_size_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(60000, 60000) + b"\x00" * 64)
    with pytest.raises(DispenserError, match="60000x60000 pixels"):
        load_image_bgr(bomb)


def test_header_size_reads_every_format_the_loader_decodes(
        tmp_path: Path, astronaut_bgr: np.ndarray) -> None:
    frame = np.ascontiguousarray(astronaut_bgr[:300, :450])
    for suffix in IMAGE_SUFFIXES:
        pixels = frame[:, :, 0] if suffix in (".pbm", ".pgm") else frame
        data = _write(tmp_path / f"x{suffix}", pixels).read_bytes()
        assert header_size(data) == (450, 300), suffix
    lossless = tmp_path / "lossless.webp"
    assert cv2.imwrite(str(lossless), frame, [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert header_size(lossless.read_bytes()) == (450, 300)
    assert header_size(b"GIF89a...") is None
    assert header_size(b"\xff\xd8\x00") is None


def test_to_bgr8_limits_and_conversions() -> None:
    assert to_bgr8(np.zeros((0, 3, 3), np.uint8), "x") is None
    frame = np.zeros((4, 4, 3), np.uint8)
    assert to_bgr8(frame, "x") is frame  # no copy in the common case
    floats = np.full((2, 2), 0.5, np.float64)
    converted = to_bgr8(floats, "x")
    assert converted is not None and converted.shape == (2, 2, 3) and converted[0, 0, 0] == 128
    side = int(MAX_PIXELS ** 0.5) + 1
    with pytest.raises(DispenserError, match="MP limit"):
        to_bgr8(np.broadcast_to(np.uint8(0), (side, side)), "x")


# --- decompression bombs: small files that claim 20000x20000 pixels ----------------------

def _tiff_header(width: int, height: int, order: str = "<") -> bytes:
    """A classic TIFF whose first image claims width x height (tags 256 and 257, LONG)."""
    magic = b"II" if order == "<" else b"MM"
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (277, 3, 1, 3)]
    ifd = struct.pack(order + "H", len(entries)) + b"".join(
        struct.pack(order + "HHII", tag, kind, count,
                    value << 16 if kind == 3 and order == ">" else value)
        for tag, kind, count, value in entries) + struct.pack(order + "I", 0)
    return magic + struct.pack(order + "HI", 42, 8) + ifd


def _bigtiff_header(width: int, height: int) -> bytes:
    entries = [(256, 16, 1, width), (257, 16, 1, height)]
    ifd = struct.pack("<Q", len(entries)) + b"".join(
        struct.pack("<HHQQ", tag, kind, count, value) for tag, kind, count, value in entries)
    return b"II" + struct.pack("<HHHQ", 43, 8, 0, 16) + ifd + struct.pack("<Q", 0)


def _bmp_header(width: int, height: int) -> bytes:
    return b"BM" + struct.pack("<IHHIIiiHH", 0, 0, 0, 54, 40, width, -height, 1, 24)


def _webp_header(width: int, height: int) -> bytes:
    vp8x = struct.pack("<I", 0) + (width - 1).to_bytes(3, "little") + (
        height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8x)) + b"WEBPVP8X" + struct.pack(
        "<I", len(vp8x)) + vp8x


BOMBS = {
    "bomb.png": _png_header(20000, 20000) + b"\x00" * 64,
    "bomb.tif": _tiff_header(20000, 20000) + b"\x00" * 64,
    "bomb_motorola.tiff": _tiff_header(20000, 20000, ">") + b"\x00" * 64,
    "bomb_big.tif": _bigtiff_header(20000, 20000) + b"\x00" * 64,
    "bomb.bmp": _bmp_header(20000, 20000) + b"\x00" * 64,
    "bomb.webp": _webp_header(20000, 20000) + b"\x00" * 64,
    "bomb.ppm": b"P6\n# a comment\n20000 20000\n255\n" + b"\x00" * 64,
    "bomb.jpg": (b"\xff\xd8\xff\xc0\x00\x11\x08" + struct.pack(">HH", 20000, 20000)
                 + b"\x03\x01\x11\x00\x02\x11\x01\x03\x11\x01\xff\xd9"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_in_any_format_is_refused_before_decoding(
        tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / name
    path.write_bytes(BOMBS[name])
    decoded: list[object] = []
    monkeypatch.setattr(cv2, "imdecode", lambda *args: decoded.append(args))
    with pytest.raises(DispenserError, match=r"is 20000x20000 pixels, more than the 50 MP"):
        load_image_bgr(path)
    assert decoded == []


@pytest.mark.parametrize("content", [b"GIF89a\x20\x4e\x20\x4e", b"\x00\x00\x00\x0cjP  ",
                                     b"v/1\x01", b"#?RADIANCE\n"],
                         ids=["gif", "jpeg2000", "openexr", "hdr"])
def test_a_format_whose_size_is_not_read_is_never_decoded(
        tmp_path: Path, content: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(content + b"\x00" * 64)
    monkeypatch.setattr(cv2, "imdecode", lambda *args: pytest.fail("decoded"))
    with pytest.raises(DispenserError, match="is not a PNG, JPEG, TIFF, BMP, WebP or PNM"):
        load_image_bgr(path)


_OPENCV_LIMIT = """
import sys
import dispenser
import cv2
import numpy as np
data = np.frombuffer(open(sys.argv[1], "rb").read(), np.uint8)
try:
    cv2.imdecode(data, cv2.IMREAD_COLOR)
except cv2.error as exc:
    print(exc, file=sys.stderr)
"""


def test_opencv_itself_refuses_a_bomb_once_dispenser_is_imported(tmp_path: Path) -> None:
    """The second line: a decoder reached some other way still stops at the same limit,
    on the header (OpenCV raises or warns naming its pixel limit) before any pixel."""
    rows = zlib.compress(b"\x00" * 64)  # far fewer than claimed: never reached
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(20000, 20000) + _png_chunk(b"IDAT", rows)
                     + _png_chunk(b"IEND", b""))
    done = subprocess.run([sys.executable, "-c", _OPENCV_LIMIT, str(bomb)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert "pixels <= CV_IO_MAX_IMAGE_PIXELS" in done.stderr, done.stderr[-1000:]

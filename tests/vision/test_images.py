"""Image files of every awkward kind -> a BGR uint8 array or one clear error line."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from dispenser.errors import DispenserError
from dispenser.vision.images import MAX_PIXELS, header_size, load_image_bgr, to_bgr8


def _write(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def _png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


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
    (b"this is not an image", "not a readable image"),
    (b"\xff\xd8\xff\xe0garbage", "not a readable image"),
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


def test_header_size_reads_png_and_jpeg(tmp_path: Path, astronaut_bgr: np.ndarray) -> None:
    frame = np.ascontiguousarray(astronaut_bgr[:300, :450])
    for suffix in (".png", ".jpg"):
        data = _write(tmp_path / f"x{suffix}", frame).read_bytes()
        assert header_size(data) == (450, 300)
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

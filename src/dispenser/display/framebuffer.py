"""The Linux framebuffer (`/dev/fbN`): a panel with no X or Wayland (Raspberry Pi OS Lite).

The panel's geometry and pixel format come from sysfs, as the kernel's fbdev driver
publishes them: `<sysfs>/fbN/virtual_size` ("800,480"), `bits_per_pixel` (16: RGB565,
32: XRGB8888; both little-endian as every Pi panel driver uses them) and `stride` (bytes
per row, which may exceed width x bytes per pixel). The sysfs root is a setting
(`display.sysfs`), so the tests describe a fake panel with a directory and a plain file.

Only the rectangles the painter changed are converted (in the panel's own orientation,
`display.rotation` applied) into one locked buffer of device pixels and written with
`pwrite`, a band of rows at a time: the device memory is never mapped into this process,
and the conversion buffer is overwritten with zeros on `close()`. Unrotated, OpenCV's
vectorised colour conversion does the work (its BGR565 and BGRA layouts are exactly the
panel's RGB565 and XRGB8888 in memory); a rotated panel goes through a compiled loop.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from dispenser.display.layout import Rect
from dispenser.errors import EXIT_FAILURE, DispenserError
from dispenser.privacy.memory import locked_buffer, unlock_pages, zeroise

FORMATS = {16: "RGB565", 32: "XRGB8888"}


def _cv2() -> Any:
    import cv2

    return cv2


class DisplayDeviceError(DispenserError):
    """The panel cannot be used (one line naming the device or the sysfs file)."""

    exit_code = EXIT_FAILURE


@dataclass(frozen=True)
class PanelInfo:
    width: int
    height: int
    bits_per_pixel: int
    stride: int              # bytes per row

    @property
    def format(self) -> str:
        return FORMATS[self.bits_per_pixel]


def _read_sysfs(directory: Path, name: str) -> str:
    path = directory / name
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
        raise DisplayDeviceError(f"display: cannot read {path} ({reason}); is "
                                 "display.device a framebuffer?") from None


def panel_info(device: Path, sysfs: Path) -> PanelInfo:
    """The size and pixel format of framebuffer `device` (e.g. /dev/fb0 -> <sysfs>/fb0)."""
    directory = sysfs / Path(os.path.realpath(device)).name
    size = _read_sysfs(directory, "virtual_size")
    bpp = _read_sysfs(directory, "bits_per_pixel")
    stride = _read_sysfs(directory, "stride")
    try:
        width, height = (int(v) for v in size.split(","))
        info = PanelInfo(width, height, int(bpp), int(stride))
    except ValueError:
        raise DisplayDeviceError(f"display: {directory} describes no framebuffer "
                                 f"(virtual_size={size!r}, bits_per_pixel={bpp!r}, "
                                 f"stride={stride!r})") from None
    if info.bits_per_pixel not in FORMATS:
        raise DisplayDeviceError(
            f"display: {device} has {info.bits_per_pixel} bits per pixel; supported: "
            + ", ".join(f"{b} ({n})" for b, n in FORMATS.items()))
    if info.width <= 0 or info.height <= 0 or info.stride < info.width * info.bits_per_pixel // 8:
        raise DisplayDeviceError(f"display: {directory} has an impossible geometry "
                                 f"({info.width}x{info.height}, stride {info.stride})")
    return info


def logical_size(info: PanelInfo, rotation: int) -> tuple[int, int]:
    """The picture's width and height: the panel's, swapped when turned by 90 or 270."""
    if rotation in (90, 270):
        return info.height, info.width
    return info.width, info.height


def device_rect(rect: Rect, rotation: int, logical_w: int, logical_h: int) -> Rect:
    """Where the picture's `rect` lands on the panel (rotation clockwise)."""
    if rotation == 90:
        return Rect(logical_h - rect.bottom, rect.x, rect.h, rect.w)
    if rotation == 180:
        return Rect(logical_w - rect.right, logical_h - rect.bottom, rect.w, rect.h)
    if rotation == 270:
        return Rect(rect.y, logical_w - rect.right, rect.h, rect.w)
    return rect


@njit(cache=True, nogil=True, inline="always")
def _pixel(canvas: np.ndarray, ly: int, lx: int, rgb565: bool) -> np.uint32:  # pragma: no cover
    b = np.uint32(canvas[ly, lx, 0])          # the picture is BGR (OpenCV's order)
    g = np.uint32(canvas[ly, lx, 1])
    r = np.uint32(canvas[ly, lx, 2])
    if rgb565:
        return ((r >> 3) << 11) | ((g >> 2) << 5) | (b >> 3)
    return (r << 16) | (g << 8) | b


@njit(cache=True, nogil=True)
def _convert(canvas: np.ndarray, out: np.ndarray, x0: int, y0: int, x1: int, y1: int,
             rotation: int, rgb565: bool) -> None:  # pragma: no cover - compiled
    """Device pixels [y0:y1, x0:x1] of `out` from the BGR picture `canvas`, in place (one
    loop per rotation, so the inner loop has no branch)."""
    lh, lw = canvas.shape[0], canvas.shape[1]
    if rotation == 0:
        for dy in range(y0, y1):
            for dx in range(x0, x1):
                out[dy, dx] = _pixel(canvas, dy, dx, rgb565)
    elif rotation == 180:
        for dy in range(y0, y1):
            for dx in range(x0, x1):
                out[dy, dx] = _pixel(canvas, lh - 1 - dy, lw - 1 - dx, rgb565)
    elif rotation == 90:
        for dy in range(y0, y1):
            for dx in range(x0, x1):
                out[dy, dx] = _pixel(canvas, lh - 1 - dx, dy, rgb565)
    else:
        for dy in range(y0, y1):
            for dx in range(x0, x1):
                out[dy, dx] = _pixel(canvas, dx, lw - 1 - dy, rgb565)


class FramebufferSink:
    """Writes changed rectangles of the picture to a framebuffer device (or a test file)."""

    def __init__(self, device: str | Path, sysfs: str | Path, rotation: int = 0) -> None:
        self.device = Path(device)
        self.info = panel_info(self.device, Path(sysfs))
        self.rotation = rotation
        self.size = logical_size(self.info, rotation)
        try:
            self._fd = os.open(self.device, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            hint = " (is the service user in the video group?)" if exc.errno in (
                errno.EACCES, errno.EPERM) else ""
            raise DisplayDeviceError(f"display: cannot open {self.device}: "
                                     f"{exc.strerror}{hint}") from None
        self._bytes_pp = self.info.bits_per_pixel // 8
        dtype = np.uint16 if self.info.bits_per_pixel == 16 else np.uint32
        # The whole panel in its own format, rows as long as the stride (padding included)
        # where the stride is a whole number of pixels: a band of rows is then one write.
        self._row_px = (self.info.stride // self._bytes_pp
                        if self.info.stride % self._bytes_pp == 0 else self.info.width)
        self._pixels = locked_buffer((self.info.height, self._row_px), dtype)

    @property
    def name(self) -> str:
        w, h = self.info.width, self.info.height
        return f"framebuffer {self.device} {w}x{h} {self.info.format} rotation {self.rotation}"

    def write(self, canvas: np.ndarray, rects: list[Rect]) -> None:
        """Convert and write `rects` of `canvas` (the picture, BGR) to the device."""
        lw, lh = self.size
        rgb565 = self.info.bits_per_pixel == 16
        for rect in rects:
            d = device_rect(rect, self.rotation, lw, lh)
            if self.rotation == 0:
                cv2 = _cv2()
                target = self._pixels[d.y:d.bottom, d.x:d.right].view(np.uint8).reshape(
                    d.h, d.w, self._bytes_pp)
                cv2.cvtColor(canvas[d.y:d.bottom, d.x:d.right],
                             cv2.COLOR_BGR2BGR565 if rgb565 else cv2.COLOR_BGR2BGRA,
                             dst=target)
            else:
                _convert(canvas, self._pixels, d.x, d.y, d.right, d.bottom, self.rotation,
                         rgb565)
            self._write_rows(d)

    def _write_rows(self, d: Rect) -> None:
        """The rows `d` spans, whole, in one write (this buffer mirrors the panel, so the
        columns outside `d` are rewritten with what they already show), else row by row."""
        stride, bpp = self.info.stride, self._bytes_pp
        if self._row_px * bpp == stride:
            self._pwrite(self._pixels[d.y:d.bottom].data.cast("B"), d.y * stride)
            return
        for y in range(d.y, d.bottom):
            self._pwrite(self._pixels[y, d.x:d.right].data.cast("B"),
                         y * stride + d.x * bpp)

    def _pwrite(self, data: memoryview, offset: int) -> None:
        written = 0
        while written < len(data):
            try:
                n = os.pwrite(self._fd, data[written:], offset + written)
            except OSError as exc:
                raise DisplayDeviceError(f"display: writing {self.device} failed: "
                                         f"{exc.strerror}") from None
            if n <= 0:
                raise DisplayDeviceError(f"display: {self.device} is smaller than its "
                                         "geometry says")
            written += n

    def close(self) -> None:
        zeroise(self._pixels)
        unlock_pages(self._pixels)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

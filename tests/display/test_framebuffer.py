"""The framebuffer sink on a fake panel: a plain file for /dev/fbN and a directory for
sysfs. Size and pixel format come from sysfs; changed rectangles land at the right bytes
in the panel's format and orientation; a bad device is one line naming it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from panel_doubles import FakePanel, read_panel

from dispenser.clock import VirtualClock
from dispenser.config import DisplaySettings
from dispenser.display.framebuffer import DisplayDeviceError, FramebufferSink
from dispenser.display.layout import Rect
from dispenser.display.open import open_display
from dispenser.service.messages import TerminalDisplay


def _picture(width: int, height: int) -> np.ndarray:
    """A random picture (BGR, as the painter's canvas is)."""
    rng = np.random.default_rng(width * height)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _quantised(bgr: np.ndarray, bpp: int) -> np.ndarray:
    """What the panel shows of picture `bgr`, as RGB (RGB565 keeps 5-6-5 bits)."""
    rgb = bgr[:, :, ::-1]
    if bpp == 32:
        return rgb
    return rgb & np.array([0xF8, 0xFC, 0xF8], np.uint8)


@pytest.mark.parametrize("size", [(800, 480), (480, 320), (320, 240), (1920, 1080)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("bpp", [16, 32])
def test_a_whole_picture_lands_in_the_panels_format(fake_panel: FakePanel,
                                                    size: tuple[int, int], bpp: int) -> None:
    width, height = size
    stride = width * bpp // 8 + 64          # padded rows, as some drivers have
    device, sysfs = fake_panel(width, height, bpp, stride)
    sink = FramebufferSink(device, sysfs)
    assert sink.size == size and sink.info.format == {16: "RGB565", 32: "XRGB8888"}[bpp]
    picture = _picture(width, height)
    sink.write(picture, [Rect(0, 0, width, height)])
    sink.close()
    assert np.array_equal(read_panel(device, width, height, bpp, stride), _quantised(picture, bpp))
    padding = np.frombuffer(device.read_bytes(), np.uint8).reshape(height, stride)
    assert not padding[:, width * bpp // 8:].any()


def test_only_the_changed_rectangle_is_written(fake_panel: FakePanel) -> None:
    device, sysfs = fake_panel(320, 240, 32)
    sink = FramebufferSink(device, sysfs)
    picture = _picture(320, 240)
    sink.write(picture, [Rect(10, 20, 30, 40)])
    sink.close()
    shown = read_panel(device, 320, 240, 32, 320 * 4)
    assert np.array_equal(shown[20:60, 10:40], _quantised(picture, 32)[20:60, 10:40])
    shown[20:60, 10:40] = 0
    assert not shown.any()


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_rotation_turns_the_picture_clockwise(fake_panel: FakePanel, rotation: int) -> None:
    device, sysfs = fake_panel(320, 240, 32)
    sink = FramebufferSink(device, sysfs, rotation)
    width, height = sink.size
    assert (width, height) == ((240, 320) if rotation in (90, 270) else (320, 240))
    picture = _picture(width, height)
    sink.write(picture, [Rect(0, 0, width // 2, height // 3), Rect(0, 0, width, height)])
    sink.close()
    shown = read_panel(device, 320, 240, 32, 320 * 4)
    # np.rot90 turns counter-clockwise: k = -rotation/90 is the clockwise turn.
    assert np.array_equal(shown, np.rot90(_quantised(picture, 32), k=-rotation // 90))


def test_a_partial_rectangle_lands_where_rotation_puts_it(fake_panel: FakePanel) -> None:
    device, sysfs = fake_panel(320, 240, 16)
    sink = FramebufferSink(device, sysfs, 90)
    picture = _picture(*sink.size)
    sink.write(picture, [Rect(5, 7, 20, 11)])
    sink.close()
    shown = read_panel(device, 320, 240, 16, 640)
    expected = np.zeros_like(shown)
    turned = np.rot90(_quantised(picture, 16), k=-1)
    mask = np.zeros(picture.shape[:2], bool)
    mask[7:18, 5:25] = True
    turned_mask = np.rot90(mask, k=-1)
    expected[turned_mask] = turned[turned_mask]
    assert np.array_equal(shown, expected)


def test_the_device_name_picks_its_sysfs_node(fake_panel: FakePanel) -> None:
    fake_panel(800, 480, 32, name="fb0")
    device, sysfs = fake_panel(480, 320, 16, name="fb1")
    sink = FramebufferSink(device, sysfs)
    assert sink.size == (480, 320)
    sink.close()


def test_a_missing_device_is_one_line_naming_it(fake_panel: FakePanel) -> None:
    device, sysfs = fake_panel(320, 240, 32)
    device.unlink()
    with pytest.raises(DisplayDeviceError) as err:
        FramebufferSink(device, sysfs)
    assert str(err.value) == f"display: cannot open {device}: No such file or directory"


def test_a_device_sysfs_does_not_describe_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DisplayDeviceError, match=r"^display: cannot read .*fb7/virtual_size "
                                                 r"\(No such file or directory\); is "):
        FramebufferSink(tmp_path / "fb7", tmp_path)


def test_an_unsupported_pixel_format_is_one_line(fake_panel: FakePanel) -> None:
    device, sysfs = fake_panel(320, 240, 24)
    with pytest.raises(DisplayDeviceError, match=r"has 24 bits per pixel; supported: "
                                                 r"16 \(RGB565\), 32 \(XRGB8888\)$"):
        FramebufferSink(device, sysfs)


def test_an_unusable_panel_leaves_the_terminal_display(
        fake_panel: FakePanel, caplog: pytest.LogCaptureFixture) -> None:
    device, sysfs = fake_panel(320, 240, 32)
    device.unlink()
    device.mkdir()                      # exists, but cannot be opened for writing
    settings = DisplaySettings(kind="framebuffer", device=str(device), sysfs=str(sysfs))
    with caplog.at_level(logging.WARNING, logger="dispenser.display"):
        display, close = open_display(settings, VirtualClock())
    close()
    assert isinstance(display, TerminalDisplay)
    [line] = [r.getMessage() for r in caplog.records]
    assert line == (f"screen_unavailable error='display: cannot open {device}: "
                    "Is a directory' using=terminal")

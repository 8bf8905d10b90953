"""The camera picture on the screen is kept in no buffer of ours once it is off the screen.

Scans the process's own memory (`dispenser.privacy.memscan`) for the exact bytes of the
preview as it sits in the canvas (scaled, mirrored) and in the panel's pixel buffer
(XRGB8888): each is found exactly once while the picture is on screen (positive control:
no other copy exists), and nowhere once a result screen has replaced it, nor after close.
The frame source's own buffer is the camera's (zeroised by the source itself)."""

from __future__ import annotations

import numpy as np
import pytest
from panel_doubles import FakePanel

from dispenser.display.fonts import FontFile
from dispenser.display.framebuffer import FramebufferSink
from dispenser.display.painter import Painter
from dispenser.privacy.memscan import scan_own_memory
from dispenser.service.messages import Message

PATTERN = 96      # bytes per pattern (32 pixels)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                    reason="reads /proc/self/mem")
def test_no_copy_of_the_preview_survives_it(fake_panel: FakePanel, font: FontFile) -> None:
    device, sysfs = fake_panel(320, 240, 32)
    sink = FramebufferSink(device, sysfs)
    painter = Painter(*sink.size, font, "en", preview=True)
    frame = np.random.default_rng(17).integers(1, 255, (480, 640, 3), dtype=np.uint8)
    reference = np.zeros((2, PATTERN), np.uint8)      # excluded from the scan itself
    try:
        sink.write(painter.canvas, painter.paint(Message.WELCOME, None, frame))
        guide = painter.layout.guide
        y, x = guide.y + 5, guide.x + 5                # a row of picture, off the oval
        reference[0] = painter.canvas[y, x:x + PATTERN // 3].reshape(-1)
        reference[1, :] = sink._pixels[y, x:x + PATTERN // 4].view(np.uint8)
        frame[...] = 0                                  # the source zeroises its own
        assert scan_own_memory(reference).hits == (1, 1)
        sink.write(painter.canvas, painter.paint(Message.TRY_LATER))
        assert scan_own_memory(reference).hits == (0, 0)
    finally:
        painter.close()
        sink.close()
    assert painter.buffers_zero()
    assert scan_own_memory(reference).hits == (0, 0)

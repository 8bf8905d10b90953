"""Where things go on a panel of any size: the guide area, the text panel, the footer.

Landscape panels (800x480 DSI, 480x320 and 320x240 SPI, 1920x1080 HDMI) put the guide on
the left and the text on the right; portrait panels (a landscape panel turned by 90 or
270 degrees) put the guide on top. The footer with the no-scan option spans the bottom
in both. Everything is a function of the size alone, so the tests can check any drawn
state against the same layout the painter used.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    def contains(self, other: Rect) -> bool:
        return (self.x <= other.x and self.y <= other.y and other.right <= self.right
                and other.bottom <= self.bottom)

    def inset(self, margin: int) -> Rect:
        return Rect(self.x + margin, self.y + margin, max(0, self.w - 2 * margin),
                    max(0, self.h - 2 * margin))


@dataclass(frozen=True)
class Oval:
    """The face guide: an upright ellipse, and the ring drawn on it while holding still."""

    cx: int
    cy: int
    rx: int
    ry: int
    ring_px: int         # ring thickness


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    guide: Rect          # camera picture / state colour and icon
    text: Rect           # the message, inside its margins
    footer: Rect         # the no-scan option, always visible
    footer_text: Rect
    oval: Oval
    margin: int

    @property
    def screen(self) -> Rect:
        return Rect(0, 0, self.width, self.height)


def layout_for(width: int, height: int) -> Layout:
    """The layout of a `width` x `height` panel (in the picture's own orientation)."""
    short = min(width, height)
    margin = max(4, round(short * 0.03))
    footer_h = max(24, round(short * 0.13))
    footer = Rect(0, height - footer_h, width, footer_h)
    body_h = height - footer_h
    if width >= height:
        side = min(round(width * 0.42), body_h)
        guide = Rect(0, 0, side, body_h)
        text = Rect(side, 0, width - side, body_h).inset(margin)
    else:
        side = min(round(body_h * 0.5), width)
        guide = Rect(0, 0, width, side)
        text = Rect(0, side, width, body_h - side).inset(margin)
    ry = round(min(guide.h * 0.40, guide.w * 0.52))
    rx = round(ry * 0.76)
    oval = Oval(guide.x + guide.w // 2, guide.y + guide.h // 2, rx, ry,
                ring_px=max(3, round(ry * 0.07)))
    icon_room = footer_h  # the footer's button symbol is a circle as tall as the footer
    footer_text = Rect(footer.x + icon_room, footer.y, footer.w - icon_room - margin,
                       footer.h).inset(max(2, footer_h // 10))
    return Layout(width, height, guide, text, footer, footer_text, oval, margin)

"""Draws one screen state into a BGR canvas and says which rectangles changed.

Three areas (`layout`): the guide (camera picture + face oval + ring, or a state colour
and icon), the text panel, and the footer (drawn once). An area is redrawn only when
what it shows changed, and `paint` returns the rectangles it touched, so a sink copies
only those to the panel: while someone holds still, a new camera frame changes the guide
and a new percentage the text; nothing else is touched.

The camera picture. It is read from the frame source's own locked buffer, scaled by
OpenCV straight into the canvas and mirrored there in place: the canvas (locked against
swap, zeroised on `close()`) is the only buffer of ours that holds it, and a result screen
overwrites it. Pillow never sees it (Pillow only draws text, into its own images); the
oval and the ring are written over it in place. No other copy is made
(tests/display/test_preview_memory.py scans the process memory for it). The canvas is in
OpenCV's channel order (BGR) so that no pass is spent swapping channels; the sinks convert.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dispenser.display import screens
from dispenser.display.fonts import FontFile, font_at
from dispenser.display.layout import Layout, Rect, layout_for
from dispenser.display.screens import SCREENS, Icon, Look
from dispenser.display.typeset import Line, fit_px, place
from dispenser.privacy.memory import locked_buffer, unlock_pages, zeroise
from dispenser.service.messages import Message, lines

_PREVIEW_EMPTY = (30, 34, 42)       # the guide area with no camera picture
_TEXT_CACHE = 24                    # rendered text panels kept (no camera data in them)
_PROGRESS_STEPS = 100               # the ring moves in 1 % steps
_TEXT_STEPS = 10                    # ... the percentage in the text in 10 % steps


def _cv2() -> Any:
    import cv2

    return cv2


def _progress_key(progress: float | None) -> int | None:
    if progress is None:
        return None
    return round(min(max(progress, 0.0), 1.0) * _PROGRESS_STEPS)


def _bgr(rgb: screens.RGB) -> tuple[int, int, int]:
    return rgb[2], rgb[1], rgb[0]


def _text_progress(progress: float | None) -> float | None:
    """The progress the text says: in 10 % steps, so a hold redraws its text ten times
    (each rendered once and then reused) while the ring moves every frame."""
    if progress is None:
        return None
    return math.floor(min(max(progress, 0.0), 1.0) * _TEXT_STEPS) / _TEXT_STEPS


class Painter:
    """The picture on a `width` x `height` panel, in the panel's own orientation."""

    def __init__(self, width: int, height: int, font: FontFile, language: str, *,
                 preview: bool = True) -> None:
        self.layout: Layout = layout_for(width, height)
        self.font = font
        self.language = language
        self.preview = preview
        self.canvas = locked_buffer((height, width, 3), np.uint8)       # BGR
        self._have_picture = False
        self._guide_key: tuple[Any, ...] | None = None
        self._text_key: tuple[str, ...] | None = None
        self._texts: OrderedDict[tuple[str, ...], np.ndarray] = OrderedDict()
        self._fresh = True
        self._ring_band = self._band(self.layout.oval.ring_px)
        self._idle_band = self._band(max(2, self.layout.oval.ring_px // 2))
        short = min(width, height)
        self._max_px = max(12, round(short * 0.12))
        self._min_px = max(10, round(short * 0.045))

    # ----------------------------------------------------------------------- public

    def paint(self, message: Message, progress: float | None = None,
              frame: np.ndarray | None = None) -> list[Rect]:
        """Draw `message` (with hold-still `progress`, and `frame` as a new camera picture
        if given) and return the rectangles that changed."""
        dirty: list[Rect] = []
        if self._fresh:
            self.canvas[...] = _bgr(screens.BACKGROUND)
            self._draw_footer()
            self._fresh = False
            dirty.append(self.layout.screen)
        screen = SCREENS[message]
        if screen.look is Look.GUIDE and self.preview and frame is not None:
            self._take_picture(frame)
            self._guide_key = None
        elif screen.look is Look.RESULT:
            self._have_picture = False      # the result's colour overwrites the picture
        ring = _progress_key(progress) if message is Message.HOLD_STILL else None
        guide_key = (screen, ring)
        if guide_key != self._guide_key:
            self._guide_key = guide_key
            self._draw_guide(screen, ring)
            dirty.append(self.layout.guide)
        text = lines(message, self.language, _text_progress(progress))
        if text != self._text_key:
            self._text_key = text
            self._draw_text(text, self.text_lines(message, _text_progress(progress)))
            dirty.append(self.layout.text)
        return dirty if not dirty or dirty[0] != self.layout.screen else [self.layout.screen]

    def close(self) -> None:
        """Overwrite the canvas with zeros and unlock it."""
        zeroise(self.canvas)
        unlock_pages(self.canvas)
        self._have_picture = False
        self._fresh = True

    def buffers_zero(self) -> bool:
        """True when the canvas holds nothing (tests)."""
        return not self.canvas.any()

    # ---------------------------------------------------------------- the camera picture

    def _take_picture(self, frame: np.ndarray) -> None:
        """Scale the centre of `frame` (the guide's aspect ratio) into the guide, mirrored
        (the visitor sees themselves as in a mirror)."""
        cv2 = _cv2()
        guide = self.layout.guide
        fh, fw = frame.shape[:2]
        if fw * guide.h > fh * guide.w:        # frame wider than the guide: crop the sides
            cw, ch = max(1, fh * guide.w // guide.h), fh
        else:
            cw, ch = fw, max(1, fw * guide.h // guide.w)
        x0, y0 = (fw - cw) // 2, (fh - ch) // 2
        area = self._area(guide)
        # Nearest-neighbour: half the cost of bilinear, and at the 0.7-1.3x scales of a
        # camera frame to a panel's guide, no visible difference in a live mirror.
        cv2.resize(frame[y0:y0 + ch, x0:x0 + cw], (guide.w, guide.h), dst=area,
                   interpolation=cv2.INTER_NEAREST)
        cv2.flip(area, 1, dst=area)
        self._have_picture = True

    # ------------------------------------------------------------------------ areas

    def _area(self, rect: Rect) -> np.ndarray:
        return self.canvas[rect.y:rect.bottom, rect.x:rect.right]

    def _draw_guide(self, screen: screens.Screen, ring: int | None) -> None:
        area = self._area(self.layout.guide)
        if screen.look is Look.RESULT:
            area[...] = _bgr(screen.colour)
            assert screen.icon is not None
            self._draw_icon(screen.icon)
            return
        if not self._have_picture:
            area[...] = _bgr(_PREVIEW_EMPTY)
        # Else the picture is there: the oval below covers its own pixels completely,
        # so a new ring position needs no new picture.
        self._draw_oval(ring)

    def _draw_oval(self, ring: int | None) -> None:
        """The grey guide, or the ring filled clockwise from the top to `ring` percent.

        Drawn by writing precomputed pixel lists (sorted by angle) rather than by OpenCV's
        anti-aliased ellipse: it is redrawn over every camera frame, and this costs a
        tenth as much."""
        pixels = self.canvas.reshape(-1, 3)
        if ring is None:
            pixels[self._idle_band[0]] = _bgr(screens.GUIDE_IDLE)
            return
        where, angles = self._ring_band
        k = int(np.searchsorted(angles, 360.0 * ring / _PROGRESS_STEPS))
        pixels[where[k:]] = _bgr(screens.RING_TRACK)
        pixels[where[:k]] = _bgr(screens.RING_FILL)

    def _band(self, thickness: int) -> tuple[np.ndarray, np.ndarray]:
        """The oval's pixels at `thickness` (flat canvas indices) and their angles
        clockwise from the top (degrees, the ellipse's own parameter, as OpenCV draws
        arcs), sorted by angle."""
        cv2 = _cv2()
        o = self.layout.oval
        mask = np.zeros(self.canvas.shape[:2], np.uint8)
        cv2.ellipse(mask, (o.cx, o.cy), (o.rx, o.ry), 0, 0, 360, 255, thickness)
        ys, xs = np.nonzero(mask)
        angles = (np.degrees(np.arctan2((ys - o.cy) / o.ry, (xs - o.cx) / o.rx)) + 90.0) % 360
        order = np.argsort(angles, kind="stable")
        return (ys * self.layout.width + xs)[order], angles[order]

    def _draw_icon(self, icon: Icon) -> None:
        cv2 = _cv2()
        g = self.layout.guide
        size = round(min(g.w, g.h) * 0.56)
        x0, y0 = g.x + (g.w - size) // 2, g.y + (g.h - size) // 2
        t = max(3, round(size * 0.08))
        white = screens.TEXT
        aa = cv2.LINE_AA

        def pt(fx: float, fy: float) -> tuple[int, int]:
            return round(x0 + fx * size), round(y0 + fy * size)

        def poly(*points: tuple[float, float]) -> None:
            cv2.polylines(self.canvas, [np.array([pt(*p) for p in points], np.int32)],
                          False, white, t, aa)

        radius = size // 2
        centre = pt(0.5, 0.5)
        if icon in (Icon.CHECK, Icon.CLOCK, Icon.CROSS):
            cv2.circle(self.canvas, centre, radius, white, t, aa)
        if icon is Icon.CHECK:
            poly((0.26, 0.52), (0.44, 0.70), (0.76, 0.32))
        elif icon is Icon.CHECK_SHORT:
            poly((0.20, 0.36), (0.40, 0.56), (0.80, 0.12))
            cv2.rectangle(self.canvas, pt(0.34, 0.78), pt(0.66, 0.92), white, -1, aa)
        elif icon is Icon.CLOCK:
            poly((0.5, 0.2), (0.5, 0.5), (0.72, 0.62))
        elif icon is Icon.CROSS:
            poly((0.32, 0.32), (0.68, 0.68))
            poly((0.68, 0.32), (0.32, 0.68))
        elif icon is Icon.ARROW_DOWN:
            poly((0.5, 0.08), (0.5, 0.70))
            poly((0.26, 0.46), (0.5, 0.70), (0.74, 0.46))
            cv2.rectangle(self.canvas, pt(0.16, 0.84), pt(0.84, 0.94), white, -1, aa)
        elif icon is Icon.EMPTY_ROLL:
            cv2.circle(self.canvas, centre, radius, white, t, aa)
            cv2.circle(self.canvas, centre, round(radius * 0.3), white, t, aa)
            poly((0.12, 0.88), (0.88, 0.12))

    def _draw_text(self, text: tuple[str, ...], placed: tuple[Line, ...]) -> None:
        box = self.layout.text
        rendered = self._texts.get(text)
        if rendered is None:
            rendered = self._render_lines(placed, box)
            self._texts[text] = rendered
            while len(self._texts) > _TEXT_CACHE:
                self._texts.popitem(last=False)
        else:
            self._texts.move_to_end(text)
        self._area(box)[...] = rendered

    def _render_lines(self, placed: tuple[Line, ...], box: Rect) -> np.ndarray:
        image = Image.new("RGB", (box.w, box.h), screens.BACKGROUND)
        draw = ImageDraw.Draw(image)
        for line in placed:
            draw.text((line.x - box.x, line.y - box.y), line.text, fill=screens.TEXT,
                      font=font_at(self.font, line.px))
        return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])

    def _draw_footer(self) -> None:
        cv2 = _cv2()
        f, ft = self.layout.footer, self.layout.footer_text
        self._area(f)[...] = _bgr(screens.FOOTER)
        r = max(6, round(f.h * 0.30))
        centre = (f.x + f.h // 2 + self.layout.margin // 2, f.y + f.h // 2)
        cv2.circle(self.canvas, centre, r, screens.TEXT, max(2, r // 4), cv2.LINE_AA)
        cv2.circle(self.canvas, centre, max(2, r // 2), screens.TEXT, -1, cv2.LINE_AA)
        image = Image.fromarray(np.ascontiguousarray(self._area(ft)))
        draw = ImageDraw.Draw(image)
        for line in self.footer_lines():
            draw.text((line.x - ft.x, line.y - ft.y), line.text, fill=screens.TEXT,
                      font=font_at(self.font, line.px))
        self._area(ft)[...] = np.asarray(image)

    def text_lines(self, message: Message, progress: float | None = None
                   ) -> tuple[Line, ...]:
        """Where `message`'s lines go (what `paint` draws; the layout tests check it). The
        size is chosen for the widest text the message takes (hold-still at 100 %), so it
        does not change while the percentage counts up."""
        box = self.layout.text
        px = fit_px(lines(message, self.language, 1.0), self.font, box, self._max_px,
                    self._min_px)
        return place(lines(message, self.language, progress), self.font, box, px)

    def footer_lines(self) -> tuple[Line, ...]:
        """Where the footer's lines go (the no-scan option, one line per language)."""
        f, ft = self.layout.footer, self.layout.footer_text
        blocks = footer_blocks(self.language)
        px = fit_px(blocks, self.font, ft, max(10, round(f.h * 0.42)), 9)
        return place(blocks, self.font, ft, px)


def footer_blocks(language: str) -> tuple[str, ...]:
    """The no-scan option in every language shown, as one run of text (it wraps only on
    panels too narrow for one line)."""
    return ("   ".join(lines(screens.FOOTER_MESSAGE, language)),)

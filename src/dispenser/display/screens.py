"""The screen states: how each message looks, as one table.

Every message the service can show is one entry: a *guide* screen (the face oval, with
the mirrored camera picture and, while someone holds still, the filling ring) or a
*result* screen (a state colour and an icon). The colour is never the only cue: every
result has its own icon shape, so a colour-blind visitor (or a monochrome panel) tells
"here you go" from "try later" by the shape. A new outcome is one more row here plus its
text in `dispenser.service.messages`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType

from dispenser.service.messages import Message

RGB = tuple[int, int, int]

BACKGROUND: RGB = (16, 20, 26)       # near-black: high contrast for white text
TEXT: RGB = (255, 255, 255)
FOOTER: RGB = (44, 50, 60)
GUIDE_IDLE: RGB = (150, 156, 166)    # the oval before anyone holds still
RING_TRACK: RGB = (70, 76, 86)
RING_FILL: RGB = (64, 214, 110)


class Look(enum.Enum):
    GUIDE = "guide"      # face oval (+ preview, + ring while holding still)
    RESULT = "result"    # state colour + icon, no camera picture


class Icon(enum.Enum):
    """Shapes drawn by `painter` (each result state's non-colour cue)."""

    ARROW_DOWN = "arrow_down"    # paper is coming
    CHECK = "check"              # here you go
    CHECK_SHORT = "check_short"  # here you go, a shorter ribbon (check over a short bar)
    CLOCK = "clock"              # come back later
    EMPTY_ROLL = "empty_roll"    # out of paper
    CROSS = "cross"              # unavailable


@dataclass(frozen=True)
class Screen:
    look: Look
    colour: RGB                  # the guide area's fill (result) or the oval (guide)
    icon: Icon | None = None


_GUIDE = Screen(Look.GUIDE, GUIDE_IDLE)
_GREEN: RGB = (30, 150, 70)
_AMBER: RGB = (200, 120, 0)
_RED: RGB = (190, 40, 40)
_BLUE: RGB = (40, 100, 190)
_GREY: RGB = (96, 100, 110)

SCREENS: MappingProxyType[Message, Screen] = MappingProxyType({
    Message.WELCOME: _GUIDE,
    Message.LOOK_AT_CAMERA: _GUIDE,
    Message.COME_CLOSER: _GUIDE,
    Message.ONE_AT_A_TIME: _GUIDE,
    Message.HOLD_STILL: _GUIDE,
    Message.DISPENSING: Screen(Look.RESULT, _BLUE, Icon.ARROW_DOWN),
    Message.HERE_YOU_GO: Screen(Look.RESULT, _GREEN, Icon.CHECK),
    Message.SHORT_RIBBON: Screen(Look.RESULT, _GREEN, Icon.CHECK_SHORT),
    Message.TRY_LATER: Screen(Look.RESULT, _AMBER, Icon.CLOCK),
    Message.BUTTON_WAIT: Screen(Look.RESULT, _AMBER, Icon.CLOCK),
    Message.OUT_OF_PAPER: Screen(Look.RESULT, _RED, Icon.EMPTY_ROLL),
    Message.UNAVAILABLE: Screen(Look.RESULT, _GREY, Icon.CROSS),
})

# The footer's text, always on screen: not a state of its own.
FOOTER_MESSAGE = Message.BUTTON_HINT

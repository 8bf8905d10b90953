"""The edge service: camera -> vision -> store -> motor, as one explicit state machine.

`DispenserService` (service.py) is what `dispenser run` and the simulator drive; the
decision logic is the transition table in state.py; every display string is in
messages.py. docs/service.md draws the state diagram.
"""

from dispenser.service.frames import FrameSource, FrameSourceError
from dispenser.service.messages import Display, Message, RecordingDisplay, TerminalDisplay
from dispenser.service.service import DispenserService
from dispenser.service.state import Event, State

__all__ = [
           "DispenserService",
           "Display",
           "Event",
           "FrameSource",
           "FrameSourceError",
           "Message",
           "RecordingDisplay",
           "State",
           "TerminalDisplay",
]

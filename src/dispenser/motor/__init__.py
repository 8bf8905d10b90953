"""The paper motor, driven through a microcontroller over a serial link.

`MotorLink` is the host driver (docs/protocol.md is the wire protocol; hw/ the controller
firmware; firmware_sim/ the same firmware on a pty). `protocol` is the codec shared
byte-for-byte with the controller.
"""

from dispenser.motor.link import MotorLink
from dispenser.motor.messages import ControllerState, DispenseResult, MotorError

__all__ = ["ControllerState", "DispenseResult", "MotorError", "MotorLink"]

"""What the host makes of the controller's replies: typed, validated views of the payloads
(docs/protocol.md, "Payloads"), the controller state the service shows, and the result of
one dispense."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from dispenser.errors import EXIT_FAILURE, DispenserError
from dispenser.motor import protocol as P


class ControllerState(enum.Enum):
    """What the service shows about the paper mechanism."""

    READY = "ready"
    BUSY = "busy"                  # a ribbon is going out
    OUT_OF_PAPER = "out of paper"
    JAMMED = "jammed"              # latched until the door is opened and closed
    DOOR_OPEN = "door open"
    OFFLINE = "controller offline"


_STATE_OF_BYTE = {
    P.ST_READY: ControllerState.READY,
    P.ST_RUNNING: ControllerState.BUSY,
    P.ST_JAMMED: ControllerState.JAMMED,
    P.ST_PAPER_EMPTY: ControllerState.OUT_OF_PAPER,
    P.ST_DOOR_OPEN: ControllerState.DOOR_OPEN,
}


def state_from_byte(value: int) -> ControllerState:
    """Controller state byte -> ControllerState (an unknown value reads as OFFLINE)."""
    return _STATE_OF_BYTE.get(value, ControllerState.OFFLINE)


def error_name(code: int) -> str:
    """ERROR code -> its name in docs/protocol.md (unknown codes as `error_<n>`)."""
    return P.ERROR_NAMES.get(code, f"error_{code}")


class MotorError(DispenserError):
    """The controller is absent or refused a technician command; `code` is the error name
    (`offline`, `jam`, `door_open`, ...) the CLI reports."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class PayloadError(ValueError):
    """A reply whose payload does not have the size its type requires."""


def _need(payload: bytes, size: int, what: str) -> None:
    if len(payload) != size:
        raise PayloadError(f"{what} payload has {len(payload)} bytes, expected {size}")


@dataclass(frozen=True)
class DispenseResult:
    """How one dispense ended. `dispensed_mm` is what the controller measured; when it
    cannot vouch for it (a reset whose record was lost), `dispensed_known` is False."""

    ok: bool
    dispensed_mm: int
    error: str | None = None
    seq: int = 0
    dispensed_known: bool = True


@dataclass(frozen=True)
class Capabilities:
    """CAPABILITIES reply to HELLO."""

    protocol: int
    firmware: tuple[int, int, int]
    boot_id: int
    features: int
    max_length_mm: int
    max_run_ms: int
    heartbeat_ms: int
    speed_mm_s: int

    SIZE = 15

    @classmethod
    def decode(cls, payload: bytes) -> Capabilities:
        _need(payload, cls.SIZE, "capabilities")
        b = payload
        return cls(protocol=b[0], firmware=(b[1], b[2], b[3]), boot_id=P.get_u16(b, 4),
                   features=b[6], max_length_mm=P.get_u16(b, 7), max_run_ms=P.get_u16(b, 9),
                   heartbeat_ms=P.get_u16(b, 11), speed_mm_s=P.get_u16(b, 13))

    def feature_names(self) -> list[str]:
        names = {P.CAP_ENCODER: "encoder", P.CAP_PAPER_SENSOR: "paper_sensor",
                 P.CAP_DOOR_SWITCH: "door_switch", P.CAP_BUTTON: "button",
                 P.CAP_CURRENT_SENSE: "current_sense", P.CAP_RETAINED_RECORD: "retained_record"}
        return [name for bit, name in names.items() if self.features & bit]


@dataclass(frozen=True)
class ControllerStatus:
    """STATUS_REPLY (answer to STATUS and HEARTBEAT)."""

    state: int
    flags: int
    boot_id: int
    buttons: int
    last_seq: int
    last_result: int
    last_error: int
    last_mm: int
    paper_left_mm: int   # -1 when the controller has no roll estimate
    total_mm: int
    uptime_ms: int

    SIZE = 24

    @classmethod
    def decode(cls, payload: bytes) -> ControllerStatus:
        _need(payload, cls.SIZE, "status")
        b = payload
        left = P.get_u32(b, 12)
        return cls(state=b[0], flags=b[1], boot_id=P.get_u16(b, 2), buttons=P.get_u16(b, 4),
                   last_seq=P.get_u16(b, 6), last_result=b[8], last_error=b[9],
                   last_mm=P.get_u16(b, 10),
                   paper_left_mm=-1 if left == P.PAPER_LEFT_UNKNOWN else left,
                   total_mm=P.get_u32(b, 16), uptime_ms=P.get_u32(b, 20))

    def as_dict(self) -> dict[str, int | str]:
        """The technician view (`dispenser motor status`)."""
        results = {P.R_NONE: "none", P.R_RUNNING: "running", P.R_DONE: "done",
                   P.R_ERROR: "error"}
        return {
            "state": P.STATE_NAMES.get(self.state, f"state_{self.state}"),
            "door": "open" if self.flags & P.F_DOOR_OPEN else "closed",
            "paper": "present" if self.flags & P.F_PAPER_PRESENT else "out",
            "motor": "on" if self.flags & P.F_MOTOR_ON else "off",
            "jam_latched": int(bool(self.flags & P.F_JAM_LATCHED)),
            "boot_id": self.boot_id,
            "button_presses": self.buttons,
            "last_seq": self.last_seq,
            "last_result": results.get(self.last_result, f"result_{self.last_result}"),
            "last_error": error_name(self.last_error) if self.last_error else "none",
            "last_dispensed_mm": self.last_mm,
            "paper_left_mm": self.paper_left_mm,
            "total_dispensed_mm": self.total_mm,
            "uptime_ms": self.uptime_ms,
        }


@dataclass(frozen=True)
class ControllerEvent:
    """EVENT: sent by the controller on a button press or a state change, and at boot."""

    state: int
    flags: int
    buttons: int
    boot_id: int

    SIZE = 6

    @classmethod
    def decode(cls, payload: bytes) -> ControllerEvent:
        _need(payload, cls.SIZE, "event")
        return cls(state=payload[0], flags=payload[1], buttons=P.get_u16(payload, 2),
                   boot_id=P.get_u16(payload, 4))


def decode_error(payload: bytes) -> tuple[str, int]:
    """ERROR payload -> (error name, dispensed_mm)."""
    _need(payload, 3, "error")
    return error_name(payload[0]), P.get_u16(payload, 1)


def decode_done(payload: bytes) -> int:
    """DONE payload -> dispensed_mm."""
    _need(payload, 2, "done")
    return P.get_u16(payload, 0)

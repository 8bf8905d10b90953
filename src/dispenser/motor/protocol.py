"""The motor link's wire format: COBS-framed, CRC-16/CCITT-FALSE-checked, versioned frames.

This one file is the protocol for all three sides: the host driver imports it as
`dispenser.motor.protocol`, the simulated controller imports it the same way, and the
RP2040 runs it unchanged under MicroPython (flashed as `protocol.py` beside `main.py`, see
hw/README.md). That is why it uses only what MicroPython has: no dataclasses, enum, struct
or typing at run time, no f-strings with format specs, and annotations that name builtins
only (MicroPython ignores annotations; CPython evaluates these and finds builtins).

docs/protocol.md is the specification; the constants below are its tables.

Frame on the wire:  COBS(body) 0x00
body:               version u8 | type u8 | seq u16 | len u8 | payload[len] | crc u16
All integers are little-endian. The CRC covers version..payload.
"""

VERSION = 1

# Seq 0 marks a frame the controller sends on its own (EVENT, NAK); hosts use 1..65535.
SEQ_NONE = 0

HEADER_LEN = 5  # version, type, seq (2), len
CRC_LEN = 2
MAX_PAYLOAD = 32
MAX_BODY = HEADER_LEN + MAX_PAYLOAD + CRC_LEN
# COBS adds one byte per 254 and the leading code byte; anything longer is garbage.
MAX_ENCODED = MAX_BODY + 2

# Requests (host -> controller).
HELLO = 0x01
DISPENSE = 0x02
STATUS = 0x03
ABORT = 0x04
HEARTBEAT = 0x05

# Replies and events (controller -> host).
ACK = 0x80
CAPABILITIES = 0x81
DONE = 0x82
ERROR = 0x83
STATUS_REPLY = 0x84
EVENT = 0x85

REQUEST_TYPES = (HELLO, DISPENSE, STATUS, ABORT, HEARTBEAT)
REPLY_TYPES = (ACK, CAPABILITIES, DONE, ERROR, STATUS_REPLY, EVENT)

TYPE_NAMES = {
    HELLO: "hello", DISPENSE: "dispense", STATUS: "status", ABORT: "abort",
    HEARTBEAT: "heartbeat", ACK: "ack", CAPABILITIES: "capabilities", DONE: "done",
    ERROR: "error", STATUS_REPLY: "status_reply", EVENT: "event",
}

# Error codes carried by ERROR frames (code u8, dispensed_mm u16).
E_BAD_FRAME = 1
E_BAD_VERSION = 2
E_UNKNOWN_COMMAND = 3
E_BAD_LENGTH = 4
E_BUSY = 5
E_JAM = 6
E_PAPER_EMPTY = 7
E_DOOR_OPEN = 8
E_OVERCURRENT = 9
E_TIMEOUT = 10
E_HEARTBEAT_LOST = 11
E_ABORTED = 12
E_RESET = 13

ERROR_NAMES = {
    E_BAD_FRAME: "bad_frame", E_BAD_VERSION: "bad_version",
    E_UNKNOWN_COMMAND: "unknown_command", E_BAD_LENGTH: "bad_length", E_BUSY: "busy",
    E_JAM: "jam", E_PAPER_EMPTY: "paper_empty", E_DOOR_OPEN: "door_open",
    E_OVERCURRENT: "overcurrent", E_TIMEOUT: "timeout", E_HEARTBEAT_LOST: "heartbeat_lost",
    E_ABORTED: "aborted", E_RESET: "reset",
}

# Controller states (STATUS_REPLY / EVENT byte 0), in the priority the controller reports them.
ST_READY = 0
ST_RUNNING = 1
ST_JAMMED = 2
ST_PAPER_EMPTY = 3
ST_DOOR_OPEN = 4

STATE_NAMES = {ST_READY: "ready", ST_RUNNING: "running", ST_JAMMED: "jammed",
               ST_PAPER_EMPTY: "paper_empty", ST_DOOR_OPEN: "door_open"}

# STATUS_REPLY flags byte.
F_DOOR_OPEN = 0x01
F_PAPER_PRESENT = 0x02
F_MOTOR_ON = 0x04
F_JAM_LATCHED = 0x08

# Result of the most recent dispense (STATUS_REPLY last_result).
R_NONE = 0
R_RUNNING = 1
R_DONE = 2
R_ERROR = 3

# CAPABILITIES features byte.
CAP_ENCODER = 0x01
CAP_PAPER_SENSOR = 0x02
CAP_DOOR_SWITCH = 0x04
CAP_BUTTON = 0x08
CAP_CURRENT_SENSE = 0x10
CAP_RETAINED_RECORD = 0x20

# A dispensed length the controller cannot vouch for (record lost on power-down).
MM_UNKNOWN = 0xFFFF
# STATUS_REPLY paper_left_mm when the controller has no roll estimate.
PAPER_LEFT_UNKNOWN = 0xFFFFFFFF


# --- CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, xorout 0 -------------

def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16_portable(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of `data`, table-driven (what the controller runs)."""
    table = _CRC_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ b]
    return crc


try:  # CPython: binascii.crc_hqx is this exact CRC in C (init passed as 0xFFFF).
    from binascii import crc_hqx as _crc_hqx

    def crc16(data: bytes, crc: int = 0xFFFF) -> int:
        """CRC-16/CCITT-FALSE of `data` (check value of b"123456789" is 0x29B1)."""
        return _crc_hqx(data, crc)
except ImportError:  # MicroPython
    crc16 = crc16_portable


# --- COBS (Consistent Overhead Byte Stuffing) -------------------------------------------

def cobs_encode(data: bytes) -> bytes:
    """COBS-encode `data`: the result contains no 0x00 byte (one extra byte per 254)."""
    out = bytearray()
    start = 0
    n = len(data)
    while True:
        limit = min(n, start + 254)
        zero = data.find(b"\x00", start, limit)
        if zero >= 0:
            out.append(zero - start + 1)
            out += data[start:zero]
            start = zero + 1
            continue
        out.append(limit - start + 1)
        out += data[start:limit]
        if limit - start < 254 or limit == n:
            return bytes(out)
        start = limit


def cobs_decode(data: bytes) -> bytes | None:
    """Decode one COBS block (without its 0x00 delimiter); None if it is malformed."""
    if data.find(b"\x00") >= 0:
        return None
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if end > n:
            return None
        out += data[i + 1:end]
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


# --- frames ----------------------------------------------------------------------------

def u16(v: int) -> bytes:
    return bytes((v & 0xFF, (v >> 8) & 0xFF))


def u32(v: int) -> bytes:
    return bytes((v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, (v >> 24) & 0xFF))


def get_u16(b: bytes, i: int) -> int:
    return b[i] | (b[i + 1] << 8)


def get_u32(b: bytes, i: int) -> int:
    return b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)


def encode_body(msg_type: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """The unframed body (header, payload, CRC): what the CRC test vectors show."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too long")
    head = bytes((version & 0xFF, msg_type & 0xFF, seq & 0xFF, (seq >> 8) & 0xFF,
                  len(payload)))
    body = head + bytes(payload)
    return body + u16(crc16(body))


def encode_frame(msg_type: int, seq: int, payload: bytes = b"", version: int = VERSION) -> bytes:
    """One complete frame as sent on the wire, delimiter included."""
    return cobs_encode(encode_body(msg_type, seq, payload, version)) + b"\x00"


# Frame.status values: OK, or why the block was rejected.
OK = 0
BAD_COBS = 1
BAD_LENGTH = 2
BAD_CRC = 3


class Frame:
    """One delimited block after checking: `status` is OK or the reason it was rejected.

    A rejected frame has version, msg_type and seq 0 and an empty payload. The version of
    an OK frame is returned, not checked: a receiver answers a frame of another version
    with E_BAD_VERSION (it can, because the seq is readable), which needs it.
    """

    def __init__(self, status: int, version: int = 0, msg_type: int = 0, seq: int = 0,
                 payload: bytes = b"") -> None:
        self.status = status
        self.version = version
        self.msg_type = msg_type
        self.seq = seq
        self.payload = payload


def decode_body(block: bytes) -> Frame:
    """Un-stuff and check one block (the bytes between two 0x00 delimiters)."""
    body = cobs_decode(block)
    if body is None:
        return Frame(BAD_COBS)
    n = len(body)
    if n < HEADER_LEN + CRC_LEN or n > MAX_BODY or body[4] != n - HEADER_LEN - CRC_LEN:
        return Frame(BAD_LENGTH)
    if crc16(body[:n - CRC_LEN]) != get_u16(body, n - CRC_LEN):
        return Frame(BAD_CRC)
    return Frame(OK, body[0], body[1], get_u16(body, 2), body[HEADER_LEN:n - CRC_LEN])


class FrameParser:
    """Splits a byte stream at 0x00 delimiters and checks each block.

    Resynchronisation is the framing itself: garbage can corrupt at most the frame it lands
    in, because the next 0x00 ends it. A block longer than MAX_ENCODED is dropped without
    buffering the rest of it, so memory stays bounded whatever arrives. Empty blocks
    (two delimiters in a row) are skipped: a sender may lead with a 0x00 to flush noise.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._overflow = False
        self.frames_ok = 0
        self.frames_bad = 0

    def pending_bytes(self) -> int:
        """Bytes held of a frame not yet delimited (at most MAX_ENCODED): for audits."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        """Consume `data`; return the frames it completed (good and rejected), in order."""
        frames = []
        start = 0
        n = len(data)
        while start < n:
            zero = data.find(b"\x00", start)
            end = n if zero < 0 else zero
            if not self._overflow:
                if len(self._buf) + (end - start) > MAX_ENCODED:
                    self._overflow = True
                    self._buf = bytearray()
                else:
                    self._buf += data[start:end]
            if zero < 0:
                break
            if self._overflow:
                frame = Frame(BAD_LENGTH)
            elif self._buf:
                frame = decode_body(bytes(self._buf))
            else:
                start = zero + 1
                continue
            if frame.status == OK:
                self.frames_ok += 1
            else:
                self.frames_bad += 1
            frames.append(frame)
            self._buf = bytearray()
            self._overflow = False
            start = zero + 1
        return frames

    def reset(self) -> None:
        """Forget a partial frame (after the port was reopened)."""
        self._buf = bytearray()
        self._overflow = False

"""The logging policy, in one place: structured lines, and no biometric data ever.

Log lines look like

    2026-11-22T12:00:00.123Z INFO  dispenser.store  admit occupancy=3 evictions=0

Invariant 5 says no frame, crop, landmark set or template reaches a log. Code review is the
first defence; this module is the second. A filter on every handler we install inspects
each record before it is formatted and **redacts**:

- any argument (or message object) that is a numpy array, `bytes`, `bytearray` or
  `memoryview`, or a list/tuple of 16 or more numbers (what `arr.tolist()` would give);
- any already-formatted message containing 16 or more numbers in a row (what an f-string of
  an array would give), which replaces the whole message;
- exception text attached to a record, passed through the same check.

Redaction keeps the event (so operators still see *that* something happened) and counts
it in `REDACTIONS`, which the audit report shows.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

REDACTED = "<redacted: possible biometric data>"

# More numbers than this in a row in a message looks like a vector, not an event.
_MAX_NUMBERS = 16
_NUMBER_RUN = re.compile(
    r"(?:[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?[\s,;\]\[()]+){" + str(_MAX_NUMBERS) + ",}")


class _Counter:
    """How many records were redacted since start (reported by `dispenser audit`)."""

    def __init__(self) -> None:
        self.count = 0


REDACTIONS = _Counter()


def _is_payload(value: Any) -> bool:
    if isinstance(value, np.ndarray | bytes | bytearray | memoryview):
        return True
    if isinstance(value, list | tuple) and len(value) >= _MAX_NUMBERS:
        return all(isinstance(v, int | float | np.number) for v in value)
    return False


def redact_value(value: Any) -> Any:
    """Return `value`, or the redaction marker if it could carry biometric data."""
    return REDACTED if _is_payload(value) else value


def redact_text(text: str) -> str:
    """Return `text`, or the marker if it contains a long run of numbers."""
    return REDACTED if _NUMBER_RUN.search(text) else text


class BiometricRedactionFilter(logging.Filter):
    """Redacts array/bytes payloads and number runs from every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        changed = False
        if _is_payload(record.msg):
            record.msg, changed = REDACTED, True
        if isinstance(record.args, Mapping):
            new_map = {k: redact_value(v) for k, v in record.args.items()}
            changed |= any(new_map[k] is not record.args[k] for k in new_map)
            record.args = new_map
        elif isinstance(record.args, tuple):
            new_args = tuple(redact_value(a) for a in record.args)
            changed |= any(n is not o for n, o in zip(new_args, record.args, strict=True))
            record.args = new_args
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        safe = redact_text(message)
        if safe is not message:
            record.msg, record.args, changed = REDACTED, (), True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and redact_text(str(exc)) is REDACTED:
            record.exc_info, record.exc_text, changed = None, None, True
            record.msg = f"{record.msg} [exception text redacted]"
        if changed:
            REDACTIONS.count += 1
        return True


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{t}.{int(record.msecs):03d}Z"


def configure_logging(level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Install the one handler the program logs through (stderr by default)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_UtcFormatter("%(asctime)s %(levelname)-5s %(name)s  %(message)s"))
    handler.addFilter(BiometricRedactionFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def event(logger: logging.Logger, name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured event: `name key=value ...` with scalar values only."""
    parts = [name]
    for key, value in fields.items():
        shown = redact_value(value)
        parts.append(f"{key}={shown}")
    logger.log(level, " ".join(parts))

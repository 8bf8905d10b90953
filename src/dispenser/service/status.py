"""Counters the operator may see: how many people were served, refused, faults... and
nothing about any person (no times of visits, no similarity scores, no templates).

The running service writes them (plus the store's counters and its state name) to a small
JSON file in a RAM-backed runtime directory (`/run/dispenser`, created by systemd's
`RuntimeDirectory=`, or `$XDG_RUNTIME_DIR/dispenser` on a laptop); `dispenser run
--status` prints that file. A counters-only status line also goes to the log every
`log.status_every_s`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dispenser.errors import EXIT_FAILURE, DispenserError
from dispenser.logsafe import event

_log = logging.getLogger("dispenser.status")

STATUS_FILE = "status.json"
# Held (flock, exclusive) by `dispenser run` for as long as it serves. The kernel drops the
# lock when the process ends however it ends (a stop, a crash, the watchdog's exit), so a
# status file left behind by a run that has ended is never taken for a running service.
SERVING_LOCK = "serving.lock"


@dataclass
class ServiceCounters:
    """Event counts since start (ints only)."""

    frames: int = 0              # frames read from the source
    bad_frames: int = 0          # frames rejected (wrong shape/type) or a pipeline error
    detections: int = 0          # detector runs
    idle_skips: int = 0          # idle frames the motion gate kept from the detector
    embeddings: int = 0          # embedder runs (only while someone holds still)
    decisions: int = 0
    served: int = 0              # full face ribbons that went out
    served_short: int = 0        # shorter face ribbons that went out (a likely match)
    denied: int = 0              # face decisions that refused paper (a certain match)
    dispense_failures: int = 0   # face ribbons rolled back (jam, empty, timeout, offline)
    button_served: int = 0
    button_refused: int = 0      # presses inside the global rate limit
    button_ignored: int = 0      # presses while the motor was busy or a fault was shown
    button_failures: int = 0
    paper_mm: int = 0            # paper out, face and button ribbons together
    faults: int = 0              # times the machine entered FAULT
    camera_reopens: int = 0
    stalls: int = 0              # watchdog: no frame processed for vision.watchdog_s


def runtime_dir() -> Path:
    """Where the status file lives: systemd's RuntimeDirectory, else $XDG_RUNTIME_DIR."""
    run = Path("/run/dispenser")
    if run.is_dir() and os.access(run, os.W_OK):
        return run
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and Path(xdg).is_dir():
        return Path(xdg) / "dispenser"
    return run


def status_record(counters: ServiceCounters, state: str, uptime_s: float,
                  store: Any) -> dict[str, Any]:
    """The status document: service counters, store counters (ints), state, uptime."""
    record: dict[str, Any] = {"state": state, "uptime_s": int(uptime_s)}
    record.update(dataclasses.asdict(counters))
    if dataclasses.is_dataclass(store) and not isinstance(store, type):
        record.update({f"store_{k}": int(v) for k, v in dataclasses.asdict(store).items()})
    return record


def format_status(record: dict[str, Any]) -> str:
    """One `key=value` line (the periodic log line and `dispenser run --status`)."""
    return " ".join(f"{k}={v}" for k, v in record.items())


def write_status(directory: Path, record: dict[str, Any]) -> None:
    """Atomically replace the status file (readers never see half a file)."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = directory / (STATUS_FILE + ".tmp")
    tmp.write_text(json.dumps(record, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, directory / STATUS_FILE)


def read_status(directory: Path) -> dict[str, Any]:
    path = directory / STATUS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DispenserError(f"status: no status file at {path} (is `dispenser run` "
                             "running?)", exit_code=EXIT_FAILURE) from None
    except (OSError, ValueError) as exc:
        raise DispenserError(f"status: cannot read {path}: {type(exc).__name__}",
                             exit_code=EXIT_FAILURE) from None
    if not isinstance(data, dict):
        raise DispenserError(f"status: {path} is not a status file", exit_code=EXIT_FAILURE)
    return data


@contextmanager
def serving(directory: Path) -> Iterator[None]:
    """Hold the serving lock in `directory` while the body runs; a second `dispenser run`
    with the same status directory is refused (it would overwrite the first one's file).
    A directory this user cannot write is not a start-up error (the service runs without
    a status file, as it does when writing one fails later): one warning, no lock."""
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(directory / SERVING_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        event(_log, "status_dir_unusable", logging.WARNING, directory=repr(str(directory)),
              error=exc.strerror)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DispenserError(f"another dispenser run is serving with the status "
                                 f"directory {directory}", exit_code=EXIT_FAILURE) from None
        yield
    finally:
        os.close(fd)


def is_serving(directory: Path) -> bool:
    """True while a `dispenser run` holds the serving lock in `directory`."""
    try:
        fd = os.open(directory / SERVING_LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False

"""Process-wide guarantees: configuration ceilings, the clock, no network, no disk writes,
no core dumps, memory locking, and the log redaction guard (invariants 2, 3, 5)."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from dispenser.audit.registry import Evidence, check, require
from dispenser.clock import BootClock
from dispenser.config import RETENTION_CEILING_S, settings_from_mapping
from dispenser.errors import ConfigError
from dispenser.logsafe import REDACTED, configure_logging
from dispenser.privacy import guard, memory


def _refused(data: dict[str, object]) -> str:
    try:
        settings_from_mapping(data)
    except ConfigError as exc:
        return str(exc)
    return ""


@check("config-retention-ceiling", invariant="2. Retention",
       claim="No configuration can keep a template longer than 10 minutes, and the deny "
             "window can never outlast retention.",
       method="Load configurations with retention 600.001 s, 3600 s, and deny window > "
              "retention; each must be refused with an error naming the key.")
def config_ceiling() -> Evidence:
    over = _refused({"store": {"retention_s": RETENTION_CEILING_S + 0.001}})
    hour = _refused({"store": {"retention_s": 3600}})
    inverted = _refused({"store": {"deny_window_s": 300, "retention_s": 200}})
    require("store.retention_s" in over, "retention just above 600 s was accepted")
    require("store.retention_s" in hour, "retention of one hour was accepted")
    require("store.deny_window_s" in inverted, "a deny window longer than retention was accepted")
    ok = settings_from_mapping({"store": {"retention_s": RETENTION_CEILING_S}})
    return {"ceiling_s": RETENTION_CEILING_S, "accepted_max_s": ok.store.retention_s}


@check("clock-boottime", invariant="3. Time",
       claim="Ages are measured on a clock that counts through suspend and ignores "
             "wall-clock changes.",
       method="The production clock reads CLOCK_BOOTTIME; setting the wall clock "
              "(time.time) to 1970 during a reading does not change it.")
def clock_boottime() -> Evidence:
    clock = BootClock()
    require(clock.source == "CLOCK_BOOTTIME" or not hasattr(time, "CLOCK_BOOTTIME"),
            f"production clock uses {clock.source}, not CLOCK_BOOTTIME")
    before = clock.now()
    real_time = time.time
    try:
        time.time = lambda: 0.0
        during = clock.now()
    finally:
        time.time = real_time
    require(0 <= during - before < 1.0, "the clock moved with the wall clock")
    return {"source": clock.source}


@check("no-network", invariant="5. Nothing biometric leaves RAM",
       claim="The program opens no network socket, looks up no host name and starts no "
             "other program: an attempt is refused loudly.",
       method="With the runtime guard (sys.addaudithook) on, creating a TCP socket, a UDP "
              "socket, resolving a host name (getaddrinfo, gethostbyname, gethostbyaddr) "
              "and starting a process (subprocess, os.system) must each raise "
              "PermissionError.")
def no_network() -> Evidence:
    attempts = (lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),
                lambda: socket.socket(socket.AF_INET6, socket.SOCK_DGRAM),
                lambda: socket.getaddrinfo("example.org", 443),
                lambda: socket.gethostbyname("example.org"),
                lambda: socket.gethostbyaddr("127.0.0.1"),
                lambda: subprocess.run(["true"], check=False),
                lambda: os.system("true"))
    refused = _count_refused(attempts, allowed_dirs=[])
    require(refused == len(attempts),
            f"only {refused} of {len(attempts)} network and process attempts were refused")
    return {"attempts_refused": refused}


def _count_refused(attempts: Iterable[Callable[[], object]],
                   allowed_dirs: list[Path]) -> int:
    """How many of `attempts` the guard refused (it is on only while they run)."""
    refused = 0
    guard.install(allowed_dirs)
    try:
        for attempt in attempts:
            try:
                attempt()
            except PermissionError:
                refused += 1
    finally:
        guard.uninstall()
    return refused


@check("no-disk-writes", invariant="5. Nothing biometric leaves RAM",
       claim="Nothing is written to disk except the status directory: an attempt is "
             "refused, however the path is spelled.",
       method="With the guard on, opening a file for writing (modes w, a, x, r+ and "
              "os.open with O_CREAT) outside the allow-list must raise PermissionError "
              "and leave no file, as must paths that leave the allowed folder through "
              "'..', a symlink or a sibling folder sharing its name as a prefix, a "
              "__pycache__ folder, and os.replace/os.link/os.symlink out of it; writing "
              "inside the allow-list must work.")
def no_disk_writes() -> Evidence:
    with tempfile.TemporaryDirectory() as tmp:
        allowed = Path(tmp) / "log"
        allowed.mkdir()
        target = Path(tmp) / "face.png"
        sibling = Path(tmp) / "logX"
        cache = Path(tmp) / "__pycache__"
        for folder in (sibling, cache):
            folder.mkdir()
        (allowed / "escape").symlink_to(tmp)
        inside = allowed / "status.json"
        inside.write_text("{}\n")
        attempts = [*(lambda mode=mode: open(target, mode).close()
                      for mode in ("wb", "ab", "xb", "r+b")),
                    lambda: os.close(os.open(target, os.O_WRONLY | os.O_CREAT)),
                    lambda: open(f"{allowed}/../face.png", "wb").close(),
                    lambda: open(allowed / "escape" / "face.png", "wb").close(),
                    lambda: open(sibling / "face.png", "wb").close(),
                    lambda: open(cache / "face.pyc", "wb").close(),
                    lambda: os.replace(inside, target),
                    lambda: os.link(inside, target),
                    lambda: os.symlink(inside, target)]
        refused = _count_refused([*attempts, lambda: inside.write_text("ok\n")], [allowed])
        require(refused == len(attempts),
                f"{refused} write attempts were refused, expected the {len(attempts)} "
                "outside the allow-list")
        require(not target.exists() and not target.is_symlink(),
                "a refused write left a file behind")
        require(not any(sibling.iterdir()) and not any(cache.iterdir()),
                "a refused write left a file behind")
        require(inside.read_text() == "ok\n", "writing inside the allow-list failed")
    return {"attempts_refused": refused, "allowed_write_ok": True}


@check("no-core-dumps", invariant="5. Nothing biometric leaves RAM",
       claim="A crash cannot write the process memory (and the templates in it) to disk.",
       method="After start-up hardening, RLIMIT_CORE is 0 and the process is not dumpable.")
def no_core_dumps() -> Evidence:
    memory.disable_core_dumps()
    require(memory.core_dumps_disabled(), "core dumps are still possible")
    return {"rlimit_core": 0, "dumpable": 0}


@check("memory-locked", invariant="5. Nothing biometric leaves RAM",
       claim="Buffers that hold templates are locked in RAM, so they never reach swap.",
       method="mlock(2) a template-sized buffer; it must succeed within RLIMIT_MEMLOCK "
              "(raise LimitMEMLOCK= in the systemd unit if not).")
def memory_locked() -> Evidence:
    buf = np.zeros((1024, 128), np.float32)
    ok = memory.lock_pages(buf)
    memory.unlock_pages(buf)
    require(ok, "mlock was refused: raise RLIMIT_MEMLOCK (LimitMEMLOCK= in the unit)")
    return {"locked_bytes": buf.nbytes}


@check("log-redaction", invariant="5. Nothing biometric leaves RAM",
       claim="A template handed to the logger by mistake never appears in the log.",
       method="Log a 128-float template as an argument, as bytes, as a list and inside a "
              "formatted message; every line must show the redaction marker instead.")
def log_redaction() -> Evidence:
    stream = io.StringIO()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    handler = configure_logging("INFO", stream)
    template = np.linspace(-0.25, 0.25, 128, dtype=np.float32)
    log = logging.getLogger("dispenser.audit")
    try:
        log.info("probe %s", template)
        log.info("probe %r", template.tobytes())
        log.info("probe %s", template.tolist())
        log.info(f"probe {template}")
    finally:
        root.removeHandler(handler)
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
    lines = stream.getvalue().splitlines()
    require(len(lines) == 4 and all(REDACTED in line for line in lines),
            "a template-shaped payload reached the log")
    require("0.25" not in stream.getvalue(), "template values appear in the log")
    return {"lines_redacted": len(lines)}


def _home_after_import(code: str, home: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env["HOME"] = str(home)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120,
                   capture_output=True)
    return sorted(str(p.relative_to(home)) for p in home.rglob("*"))


@check("no-native-telemetry", invariant="5. Nothing biometric leaves RAM",
       claim="No library phones home from native code: onnxruntime's built-in telemetry "
             "(device id, event cache, uploads) is switched off before it loads.",
       method="In a fresh process with an empty home folder, load the program and an "
              "ONNX session: nothing may be created. Control: importing onnxruntime "
              "without the program's opt-out shows what its telemetry would write.")
def no_native_telemetry() -> Evidence:
    with tempfile.TemporaryDirectory() as tmp:
        ours, control = Path(tmp) / "ours", Path(tmp) / "control"
        ours.mkdir()
        control.mkdir()
        created = _home_after_import(
            "import dispenser.vision.model_files as m, onnxruntime as ort\n"
            "c = m.load_card('mtcnn_pnet')\n"
            "ort.InferenceSession(m.read_verified_model(c), providers=['CPUExecutionProvider'])",
            ours)
        would_create = _home_after_import("import onnxruntime", control)
    require(not created, f"loading the program created {', '.join(created)}")
    return {"files_created": 0, "telemetry_files_without_opt_out": len(would_create)}

"""Settings: one TOML file, validated on load into frozen, typed dataclasses.

Every setting has a default that works on a laptop (simulated controller, built-in
scenario), so `Settings()` is a complete configuration. A file only overrides what it
names. Loading rejects unknown sections and keys, wrong types and out-of-range values with
one line that names the key and the allowed range, e.g.

    config: store.retention_s = 900.0 is out of range (allowed 0 < x <= 600)

The privacy ceilings are enforced here, not left to documentation: the retention limit can
be shortened, never raised past `RETENTION_CEILING_S`, and the deny window can never
outlast retention (invariant 2 in docs/privacy.md).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from dispenser.embedders import EMBEDDER_NAMES, PRECISIONS
from dispenser.errors import ConfigError
from dispenser.tomlfile import read_toml

# Hard ceiling of the retention limit (seconds). A config file cannot raise it.
RETENTION_CEILING_S = 600.0



def _setting(default: Any, doc: str, *, lo: float | None = None, hi: float | None = None,
             lo_open: bool = False, hi_open: bool = False,
             choices: tuple[str, ...] | None = None, kind: type | None = None) -> Any:
    """A dataclass field carrying its bounds, so validation and docs share one source.

    `kind` is the value's type; it is needed only for an optional setting (default None,
    "absent"), whose type cannot be read off its default."""
    meta = {"doc": doc, "lo": lo, "hi": hi, "lo_open": lo_open, "hi_open": hi_open,
            "choices": choices, "kind": kind or type(default)}
    return field(default=default, metadata=meta)


class _Section:
    """Base of every section: values are checked against their bounds on construction,
    so settings built in code obey the same limits as settings read from a file."""

    SECTION: ClassVar[str]

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            _check_value(f"{self.SECTION}.{f.name}", getattr(self, f.name), dict(f.metadata))


@dataclass(frozen=True)
class StoreSettings(_Section):
    """The ephemeral template store (docs/privacy.md, invariants 1, 2, 7)."""

    SECTION: ClassVar[str] = "store"

    deny_window_s: float = _setting(
        540.0, "a repeat visitor is refused for this long after being served",
        lo=0.0, lo_open=True, hi=RETENTION_CEILING_S)
    retention_s: float = _setting(
        600.0, "every template is overwritten with zeros at this age, by the next sweep "
        "(at most sweep_period_s later)",
        lo=0.0, lo_open=True, hi=RETENTION_CEILING_S)
    sweep_period_s: float = _setting(
        1.0, "how often the sweeper deletes expired templates", lo=0.1, hi=5.0)
    capacity: int = _setting(
        1024, "templates held at most; when full the oldest is evicted", lo=1, hi=1_048_576)
    reservation_timeout_s: float = _setting(
        30.0, "an unresolved dispense reservation is rolled back after this long",
        lo=1.0, hi=120.0)
    key_epoch_s: float = _setting(
        60.0, "templates are protected with a key that rotates this often", lo=1.0, hi=600.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.deny_window_s > self.retention_s:
            raise ConfigError(
                f"config: store.deny_window_s = {_num(self.deny_window_s)} must not exceed "
                f"store.retention_s = {_num(self.retention_s)} "
                f"(allowed 0 < deny_window_s <= retention_s <= {_num(RETENTION_CEILING_S)})")


@dataclass(frozen=True)
class MatchSettings(_Section):
    """Face matching: cosine similarity between L2-normalised templates, and the targets
    the decision rule derives its thresholds from (dispenser.store.rule, docs/vision.md).

    The thresholds are optional fixed overrides: absent, they are derived from the live
    count and the embedder card's measured impostor tail. An override below the card's
    floor is refused when the rule is built (a typo such as 0.093 would refuse most
    strangers); at 1.0 no two scans ever match, so 1 is excluded."""

    SECTION: ClassVar[str] = "match"

    threshold: float | None = _setting(
        None, "fixed similarity at or above which paper is refused (absent: derived from "
        "max_false_refusal and the live count)", lo=0.0, lo_open=True, hi=1.0, hi_open=True,
        kind=float)
    max_false_refusal: float = _setting(
        0.001, "target chance per visit that a stranger is refused paper",
        lo=0.0, lo_open=True, hi=0.1)
    max_false_short: float = _setting(
        0.02, "target chance per visit that a stranger gets the shorter ribbon or is refused "
        "(>= max_false_refusal)", lo=0.0, lo_open=True, hi=0.5)
    likely_threshold: float | None = _setting(
        None, "fixed similarity from which the shorter ribbon is given (absent: derived from "
        "max_false_short; <= threshold)", lo=0.0, lo_open=True, hi=1.0, hi_open=True,
        kind=float)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_false_short < self.max_false_refusal:
            raise ConfigError(
                f"config: match.max_false_short = {self.max_false_short!r} must be at least "
                f"match.max_false_refusal = {self.max_false_refusal!r}")
        if (self.threshold is not None and self.likely_threshold is not None
                and self.likely_threshold > self.threshold):
            raise ConfigError(
                f"config: match.likely_threshold = {self.likely_threshold!r} must not exceed "
                f"match.threshold = {self.threshold!r}")


@dataclass(frozen=True)
class VisionSettings(_Section):
    """Camera frame to template: detection, quality gate, hold-still."""

    SECTION: ClassVar[str] = "vision"

    hold_still_s: float = _setting(
        3.0, "a face must stay steady this long before any decision", lo=0.5, hi=10.0)
    min_face_px: int = _setting(
        60, "smallest face (box height in pixels) the detector looks for", lo=20, hi=1000)
    detect_max_side_px: int = _setting(
        640, "frames are downscaled so their longer side is at most this", lo=160, hi=4096)
    threads: int = _setting(
        2, "onnxruntime intra-op threads (4 on a Pi 4/5, 2 on a 2-core laptop)", lo=1, hi=64)
    embedder: str = _setting(
        EMBEDDER_NAMES[0], "face embedder: sface (default, docs/vision.md has why) or dlib "
        "(kept for comparison); its model card holds the calibration the decision rule uses",
        choices=EMBEDDER_NAMES)
    embedder_precision: str = _setting(
        "float32", "face embedder weights: float32, or int8 (faster where the CPU has int8 "
        "dot products, each with its own model card: docs/performance.md)",
        choices=PRECISIONS)
    idle_detect_hz: float = _setting(
        2.0, "detection rate while nobody is in view", lo=0.1, hi=30.0)
    decision_cooldown_s: float = _setting(
        30.0, "a face still in view after its decision is decided again only after this long",
        lo=1.0, hi=3600.0)
    watchdog_s: float = _setting(
        10.0, "no frame processed for this long is a fault (camera re-opened)",
        lo=1.0, hi=300.0)


@dataclass(frozen=True)
class CameraSettings(_Section):
    """Where frames come from."""

    SECTION: ClassVar[str] = "camera"

    source: str = _setting(
        "0", "camera index (\"0\"), a video file path, or a V4L2 device path")
    width: int = _setting(640, "requested capture width", lo=160, hi=4096)
    height: int = _setting(480, "requested capture height", lo=120, hi=4096)


@dataclass(frozen=True)
class SerialSettings(_Section):
    """The link to the motor controller."""

    SECTION: ClassVar[str] = "serial"

    port: str = _setting(
        "sim", "serial device path, or \"sim\" to run the simulated controller in-process")
    baud: int = _setting(115200, "baud rate (ignored by USB-CDC)", lo=1200, hi=3_000_000)
    timeout_s: float = _setting(0.5, "reply timeout per request", lo=0.05, hi=10.0)
    retries: int = _setting(3, "resends of a request before the controller is offline",
                            lo=0, hi=10)
    heartbeat_s: float = _setting(
        1.0, "heartbeat period; the controller stops the motor when heartbeats stop",
        lo=0.1, hi=10.0)


@dataclass(frozen=True)
class DispenseSettings(_Section):
    """Paper."""

    SECTION: ClassVar[str] = "dispense"

    ribbon_mm: int = _setting(600, "ribbon length per face decision", lo=600, hi=1000)
    short_ribbon_mm: int = _setting(
        300, "ribbon length when the face is close to, but not surely, someone served in the "
        "deny window (< ribbon_mm)", lo=0, lo_open=True, hi=1000)
    button_ribbon_mm: int = _setting(
        400, "ribbon length for the no-scan button (no face processing)", lo=100, hi=1000)
    button_min_interval_s: float = _setting(
        30.0, "the no-scan button dispenses at most once per this many seconds (globally)",
        lo=0.0, hi=3600.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.short_ribbon_mm >= self.ribbon_mm:
            raise ConfigError(
                f"config: dispense.short_ribbon_mm = {self.short_ribbon_mm} must be shorter "
                f"than dispense.ribbon_mm = {self.ribbon_mm}")


@dataclass(frozen=True)
class DisplaySettings(_Section):
    """What the person in front of the machine reads."""

    SECTION: ClassVar[str] = "display"

    kind: str = _setting(
        "terminal", "terminal (messages to the log), framebuffer (a panel, no desktop "
        "needed) or window (an OpenCV window on a desktop)",
        choices=("terminal", "framebuffer", "window"))
    language: str = _setting(
        "zh+en", "message language: Simplified Chinese and English together, or one",
        choices=("zh+en", "zh", "en"))
    message_s: float = _setting(
        4.0, "how long a result (\"Here you go\", \"try again later\") stays on screen",
        lo=0.5, hi=60.0)
    device: str = _setting("/dev/fb0", "framebuffer device (display.kind = framebuffer)")
    sysfs: str = _setting(
        "/sys/class/graphics", "where the framebuffer's size and pixel format are read "
        "(<sysfs>/fbN/)")
    rotation: int = _setting(
        0, "clockwise rotation of the picture on the panel: 0, 90, 180 or 270", lo=0, hi=270)
    size: str = _setting("800x480", "window size WxH (display.kind = window)")
    preview: bool = _setting(
        True, "show the mirrored camera picture inside the face guide")
    font: str = _setting(
        "auto", "auto (Noto Sans CJK SC from fontconfig, else the bundled subset), "
        "bundled, or a font file path")
    max_fps: float = _setting(
        15.0, "the screen is redrawn at most this often (and never faster than frames come)",
        lo=1.0, hi=60.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rotation not in (0, 90, 180, 270):
            raise ConfigError(f"config: display.rotation = {self.rotation} is not allowed "
                              "(allowed one of 0, 90, 180, 270)")
        parse_size("display.size", self.size)


@dataclass(frozen=True)
class LogSettings(_Section):
    """Operational logging (never biometric data: see dispenser.logsafe)."""

    SECTION: ClassVar[str] = "log"

    level: str = _setting("INFO", "log level",
                          choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    status_every_s: float = _setting(
        300.0, "a counters-only status line is logged this often", lo=1.0, hi=86400.0)


@dataclass(frozen=True)
class Settings:
    """The whole configuration; `Settings()` is the laptop default."""

    store: StoreSettings = field(default_factory=StoreSettings)
    match: MatchSettings = field(default_factory=MatchSettings)
    vision: VisionSettings = field(default_factory=VisionSettings)
    camera: CameraSettings = field(default_factory=CameraSettings)
    serial: SerialSettings = field(default_factory=SerialSettings)
    dispense: DispenseSettings = field(default_factory=DispenseSettings)
    display: DisplaySettings = field(default_factory=DisplaySettings)
    log: LogSettings = field(default_factory=LogSettings)


def parse_size(key: str, text: str) -> tuple[int, int]:
    """"800x480" -> (800, 480); a ConfigError naming `key` for anything else."""
    parts = text.lower().split("x")
    if (len(parts) == 2 and all(p.isdigit() for p in parts)
            and all(16 <= int(p) <= 8192 for p in parts)):
        return int(parts[0]), int(parts[1])
    raise ConfigError(f"config: {key} = {text!r} is not a size (expected WxH, e.g. "
                      "800x480, each side 16..8192)")


def _num(x: float) -> str:
    """600.0 -> '600', 0.1 -> '0.1', 1048576 -> '1048576' (never scientific notation)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _describe_range(meta: dict[str, Any]) -> str:
    if meta["choices"]:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    lo, hi = meta["lo"], meta["hi"]
    left = "" if lo is None else f"{_num(lo)} {'<' if meta['lo_open'] else '<='} "
    right = "" if hi is None else f" {'<' if meta['hi_open'] else '<='} {_num(hi)}"
    return f"{left}x{right}"


def _coerce(key: str, value: Any, kind: type) -> Any:
    """Accept ints where floats are expected; reject bools posing as numbers."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(
                f"config: {key} = {value!r} has the wrong type (expected true or false)")
        return value
    ok = (isinstance(value, kind) and not isinstance(value, bool)) or (
        kind is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ConfigError(
            f"config: {key} = {value!r} has the wrong type (expected {kind.__name__})")
    if kind is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config: {key} = {value!r} must be a finite number")
    return value


def _check_value(key: str, value: Any, meta: dict[str, Any]) -> None:
    if value is None:  # an optional setting left absent
        return
    if meta["choices"] and value not in meta["choices"]:
        raise ConfigError(f"config: {key} = {value!r} is not allowed "
                          f"(allowed {_describe_range(meta)})")
    lo, hi = meta["lo"], meta["hi"]
    too_low = lo is not None and (value <= lo if meta["lo_open"] else value < lo)
    too_high = hi is not None and (value >= hi if meta["hi_open"] else value > hi)
    if too_low or too_high:
        raise ConfigError(f"config: {key} = {value!r} is out of range "
                          f"(allowed {_describe_range(meta)})")


def _build_section(name: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"config: [{name}] must be a table, not {type(table).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in known:
            raise ConfigError(f"config: unknown key {name}.{key} "
                              f"(known: {', '.join(sorted(known))})")
        kind = known[key].metadata["kind"]
        values[key] = _coerce(f"{name}.{key}", raw, kind)
    return cls(**values)


def _section_classes() -> dict[str, type[_Section]]:
    """Section name -> its dataclass, read off `Settings`' annotations."""
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def settings_from_mapping(data: dict[str, Any]) -> Settings:
    """Validate a parsed TOML document (a dict of section tables) into `Settings`."""
    sections = _section_classes()
    built: dict[str, Any] = {}
    for name, table in data.items():
        if name not in sections:
            raise ConfigError(f"config: unknown section [{name}] "
                              f"(known: {', '.join(sorted(sections))})")
        built[name] = _build_section(name, sections[name], table)
    return Settings(**built)


def load_settings(path: str | Path | None) -> Settings:
    """Load and validate `path`; `None` means the built-in laptop defaults."""
    if path is None:
        return Settings()
    data = read_toml(Path(path), "config", ConfigError)
    return settings_from_mapping(data)


def describe_settings() -> list[tuple[str, Any, str, str]]:
    """(key, default, allowed range, meaning) for every setting: used by docs and --help."""
    rows = []
    for section, cls in _section_classes().items():
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            meta = dict(f.metadata)
            rows.append((f"{section}.{f.name}", f.default, _describe_range(meta),
                         meta["doc"]))
    return rows

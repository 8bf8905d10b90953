"""`dispenser motor`: technician commands to the motor controller, no face processing.

    dispenser motor [--port PATH] status [--json]
    dispenser motor [--port PATH] dispense MM
    dispenser motor [--port PATH] abort
    dispenser motor [--port PATH] selftest [--feed MM]

Which controller: `--port PATH`, else `serial.port` from the configuration when it names a
device, else the real controller found at `/dev/dispenser-motor` (hw/99-dispenser.rules)
or its one `/dev/serial/by-id/usb-MicroPython_*` link. The in-process simulator is used only
when asked for by name (`--port sim`): the laptop default `serial.port = "sim"` never
sends a technician's command to a simulator while the real controller goes untouched.

Exit 0 when the controller did what was asked; otherwise one line naming the controller's
error (`jam`, `paper_empty`, `door_open`, `offline`, ...) and exit 1.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

from dispenser.clock import BootClock
from dispenser.config import Settings
from dispenser.errors import EXIT_FAILURE, EXIT_OK, DispenserError
from dispenser.motor import MotorLink
from dispenser.motor.messages import MotorError
from dispenser.motor_connection import SIM_PORT, connect_motor

# Where the real controller appears on a board: the fixed name the udev rule creates, then
# the kernel's by-id links of the RP2040 controller (both followed to /dev/ttyACM*).
CONTROLLER_LINK = "/dev/dispenser-motor"
CONTROLLER_BY_ID = "/dev/serial/by-id/usb-MicroPython_Board_in_FS_mode_*"


def controller_port(requested: str | None, configured: str) -> str:
    """The port a technician command talks to (see the module docstring)."""
    if requested is not None:
        return requested
    if configured != SIM_PORT:
        return configured
    if os.path.exists(CONTROLLER_LINK):
        return CONTROLLER_LINK
    by_id = sorted(glob.glob(CONTROLLER_BY_ID))
    if len(by_id) == 1:
        return by_id[0]
    found = f"{len(by_id)} controllers under /dev/serial/by-id" if by_id else "no controller"
    raise DispenserError(
        f"motor: {found} and no {CONTROLLER_LINK}; name it with --port PATH "
        f"(or --port {SIM_PORT} for the simulated controller)", exit_code=EXIT_FAILURE)


def _length(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of mm: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"length must be 1..65535 mm, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", metavar="PATH", default=None,
                        help="serial device of the controller, e.g. /dev/dispenser-motor or "
                             "/dev/serial/by-id/usb-MicroPython_Board_in_FS_mode_...-if00, "
                             "or 'sim' for the simulated controller (default: serial.port "
                             "from the configuration if it names a device, else the "
                             "controller found at /dev/dispenser-motor or by-id)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("status", help="show the controller's state, sensors and counters")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    p = sub.add_parser("dispense", help="feed one ribbon of MM millimetres")
    p.add_argument("mm", type=_length, metavar="MM", help="ribbon length in mm")
    sub.add_parser("abort", help="stop the motor now")
    p = sub.add_parser("selftest", help="check link, framing, commands and sensors")
    p.add_argument("--feed", type=_length, metavar="MM", default=None,
                   help="also feed MM of paper and check the measured length")


def run(args: argparse.Namespace, settings: Settings) -> int:
    port = controller_port(args.port, settings.serial.port)
    with connect_motor(settings.serial, BootClock(), port=port) as connection:
        link = connection.link
        if args.action == "status":
            status = link.status()
            if args.json:
                print(json.dumps(status))
            else:
                for key, value in status.items():
                    print(f"{key:<20} {value}")
        elif args.action == "dispense":
            r = link.dispense(args.mm)
            if not r.ok:
                got = f"{r.dispensed_mm} mm" if r.dispensed_known else "an unknown length"
                raise MotorError(f"dispense failed: {r.error} (asked {args.mm} mm, "
                                 f"{got} went out)", code=r.error or "error")
            print(f"dispensed {r.dispensed_mm} mm (asked {args.mm} mm)")
        elif args.action == "abort":
            link.abort()
            print("motor stopped")
        else:
            return _selftest(link, args.feed or 0)
    return EXIT_OK


def _selftest(link: MotorLink, feed_mm: int) -> int:
    from dispenser.motor.selftest import run_selftest

    first_error = ""
    for check in run_selftest(link, feed_mm):
        print(f"{'PASS' if check.ok else 'FAIL'}  {check.name:<10} {check.detail}")
        if not check.ok and not first_error:
            first_error = check.error
    if first_error:
        raise DispenserError(f"selftest failed: {first_error}", exit_code=1)
    return EXIT_OK

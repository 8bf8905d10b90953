"""The `dispenser` command line: global options, subcommand dispatch, one-line errors.

Contract (docs/operator.md): every subcommand accepts `--help`; bad input exits non-zero
with one human-readable line on stderr (`dispenser: error: ...`); nothing prints a
template or image data.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from dispenser import __version__
from dispenser.config import Settings, load_settings
from dispenser.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    DispenserError,
    NotAvailableYet,
)
from dispenser.interrupts import caused_by_ctrl_c
from dispenser.logsafe import configure_logging

# name -> one-line help. The module is dispenser.commands.<name with '-' as '_'>.
COMMANDS: dict[str, str] = {
    "simulate": "run the whole machine on this computer (simulated controller, built-in crowd)",
    "run": "run the dispenser service on the board (camera, controller, display)",
    "compare": "compare the faces in two images: similarity and same/different",
    "calibrate": "measure the match figures on labelled faces (per group, per crowd size)",
    "audit": "run the privacy guarantee checks and write an audit report",
    "bench": "measure the matching and vision stages on this machine",
    "firmware-sim": "run the simulated motor controller on a pseudo-terminal",
    "display": "write a PNG of every screen state the visitor can see (--demo)",
    "motor": "technician commands to the motor controller (status, dispense, abort, selftest)",
}


def _module_name(command: str) -> str:
    return "dispenser.commands." + command.replace("-", "_")


def _load_command(command: str) -> ModuleType | None:
    name = _module_name(command)
    if importlib.util.find_spec(name) is None:
        return None
    return importlib.import_module(name)


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr (the usage summary that
    argparse prints first would push the line that says what was wrong off the top)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--config", metavar="PATH", default=default,
                        help="TOML configuration file (default: built-in laptop defaults)")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        default=default, help="override log.level from the configuration")


def build_parser(selected: str | None) -> argparse.ArgumentParser:
    """The full parser; only `selected`'s module is imported to add its arguments."""
    parser = _Parser(
        prog="dispenser",
        description="Open, auditable face-matching paper dispenser. Templates live in RAM "
                    "only and are overwritten at the retention limit (10 minutes at most) "
                    "by the next sweep (at most one sweep period later).",
    )
    parser.add_argument("--version", action="version", version=f"dispenser {__version__}")
    _add_global_options(parser, default=None)
    # The global options are accepted after the subcommand too (`dispenser run --config X`);
    # SUPPRESS keeps a sub-level absence from overwriting a top-level value.
    common = _Parser(add_help=False)
    _add_global_options(common, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, parents=[common])
        if name == selected:
            module = _load_command(name)
            if module is not None:
                module.add_arguments(p)
    return parser


def _selected_command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dispenser` command; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_selected_command(args_list))
    args = parser.parse_args(args_list)
    try:
        settings: Settings = load_settings(args.config)
        configure_logging(args.log_level or settings.log.level)
        module = _load_command(args.command)
        if module is None:
            raise NotAvailableYet(f"'{args.command}' is not available yet in this version",
                                  exit_code=EXIT_FAILURE)
        code: int = module.run(args, settings)
        return code
    except DispenserError as exc:
        print(f"dispenser: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        logging.getLogger("dispenser").info("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as exc:
        if not caused_by_ctrl_c(exc):
            raise
        logging.getLogger("dispenser").info("interrupted")
        return EXIT_INTERRUPTED


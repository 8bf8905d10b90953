"""Errors a person at a terminal can act on.

Every failure that reaches the command line is a `DispenserError` carrying one line of
plain text that names what was wrong (the key, the file, the port). The CLI prints that
line and exits non-zero; it never prints a traceback to a user for bad input.

Messages are built from names, paths and numbers only. The constructor refuses to carry
array or buffer payloads, so a template or image can never leak through an exception.
"""

from __future__ import annotations

# Exit codes shared by every command (documented in docs/operator.md).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report a command killed by it


class DispenserError(Exception):
    """A one-line, human-readable error; `exit_code` is what the CLI returns."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        if not isinstance(message, str):
            raise TypeError("DispenserError takes a str message, not a data payload")
        line = " ".join(message.split())
        super().__init__(line)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(DispenserError):
    """The configuration file is missing, unreadable or has an invalid key or value."""


class NotAvailableYet(DispenserError):
    """A subcommand whose capability has not landed yet."""


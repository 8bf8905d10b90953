"""A registry of guarantee checks and the result type they share.

A check is a function returning its evidence (a flat dict of numbers and short strings,
never data) and raising `CheckFailed` with a one-line reason when the guarantee does not
hold. Registration records which invariant of docs/privacy.md it supports, the claim in
plain language, and how it is tested, so the report is written from one source.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from dispenser.interrupts import caused_by_ctrl_c

Evidence = dict[str, int | float | str | bool]


class CheckFailed(Exception):
    """The guarantee does not hold; the message says how, in one line."""


@dataclass(frozen=True)
class Check:
    """One registered guarantee check."""

    ident: str
    invariant: str
    claim: str
    method: str
    run: Callable[[], Evidence]


@dataclass
class CheckResult:
    """The outcome of one check, as the report shows it."""

    ident: str
    invariant: str
    claim: str
    method: str
    passed: bool
    reason: str = ""
    seconds: float = 0.0
    evidence: Evidence = field(default_factory=dict)


CHECKS: list[Check] = []


def check(ident: str, *, invariant: str, claim: str, method: str
          ) -> Callable[[Callable[[], Evidence]], Callable[[], Evidence]]:
    """Register `fn` as the check `ident` (unique) for `invariant`."""

    def register(fn: Callable[[], Evidence]) -> Callable[[], Evidence]:
        if any(c.ident == ident for c in CHECKS):
            raise ValueError(f"duplicate audit check id {ident}")
        CHECKS.append(Check(ident, invariant, claim, method, fn))
        return fn

    return register


def run_check(c: Check) -> CheckResult:
    """Run one check; any exception is a failure with a one-line reason (no data), except
    one a Ctrl-C caused, which propagates so the command stops with exit 130."""
    start = time.perf_counter()
    result = CheckResult(c.ident, c.invariant, c.claim, c.method, passed=False)
    try:
        result.evidence = c.run()
        result.passed = True
    except CheckFailed as exc:
        result.reason = str(exc)
    except Exception as exc:  # a crashing check is a failed check, reported by type and place
        if caused_by_ctrl_c(exc):  # Ctrl-C, not the guarantee: stop the audit (exit 130)
            raise
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        result.reason = (f"unexpected {type(exc).__name__} at "
                         f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}")
    result.seconds = time.perf_counter() - start
    return result


def require(condition: bool, reason: str) -> None:
    """Fail the running check with `reason` unless `condition` holds."""
    if not condition:
        raise CheckFailed(reason)

"""`dispenser audit`: run the guarantee checks on this installation and write a report."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from dispenser.config import Settings
from dispenser.errors import EXIT_FAILURE, EXIT_OK, DispenserError

# Importing a module registers its checks.
_CHECK_MODULES = (
    "dispenser.audit.process_checks",
    "dispenser.audit.model_checks",
    "dispenser.audit.store_checks",
    "dispenser.audit.bounds_checks",
    "dispenser.audit.rule_checks",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("audit-report"), metavar="DIR",
                        help="folder for audit-report.md/.json/.html (default: ./audit-report)")
    parser.add_argument("--only", metavar="CHECK", action="append", default=[],
                        help="run only this check id (repeatable); default: all")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    parser.add_argument("--json", action="store_true",
                        help="print the report (as in audit-report.json) on stdout; the "
                             "per-check lines go to stderr")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from dispenser.audit.registry import CHECKS, run_check
    from dispenser.audit.report import build_report, verdict, write_report

    for name in _CHECK_MODULES:
        importlib.import_module(name)
    if args.list:
        for c in CHECKS:
            print(f"{c.ident:28} {c.invariant}: {c.claim}")
        return EXIT_OK
    unknown = sorted(set(args.only) - {c.ident for c in CHECKS})
    if unknown:
        raise DispenserError(f"unknown audit check: {', '.join(unknown)} (see --list)")
    selected = [c for c in CHECKS if not args.only or c.ident in args.only]
    lines = sys.stderr if args.json else sys.stdout
    results = []
    for c in selected:
        result = run_check(c)
        status = "PASS" if result.passed else "FAIL"
        reason = f"  ({result.reason})" if result.reason else ""
        print(f"{status}  {c.ident:28} {result.seconds:6.2f} s{reason}", file=lines,
              flush=True)
        results.append(result)
    report = build_report(results, CHECKS)
    try:
        paths = write_report(report, args.out)
    except OSError as exc:
        raise DispenserError(f"cannot write the audit report to {args.out}: "
                             f"{exc.strerror}") from None
    for ident in report["not_run"]:
        print(f"{'NOT RUN':7} {ident}", file=lines)
    print(f"{verdict(report)}: report written to " + ", ".join(str(p) for p in paths),
          file=lines)
    if args.json:
        print(json.dumps(report, indent=2))
    return EXIT_OK if report["passed"] else EXIT_FAILURE

"""The decision rule's worked example: thresholds for a few live counts, as Markdown.

docs/vision.md ("The decision rule") shows this table for the shipped embedder card, and a
test checks that the copy there is current. Regenerate it whenever the card's
`[calibration]` changes:

    python -m dispenser.store.rule_table [--config PATH]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from dispenser.config import Settings, load_settings
from dispenser.errors import DispenserError
from dispenser.store.rule import pairwise_target, rule_for

# Live counts the worked example shows: one template, a quiet hour, a station peak, a crowd.
TABLE_COUNTS = (1, 20, 60, 200)


def threshold_table(settings: Settings, counts: Sequence[int] = TABLE_COUNTS) -> str:
    """The worked example of docs/vision.md as a Markdown table (regenerate it with
    `python -m dispenser.store.rule_table` whenever the embedder card changes)."""
    rule = rule_for(settings)
    lines = [f"Rule: {rule.describe()}.", "",
             "| live templates N | pairwise target f | certain (refuse at or above) "
             "| likely (shorter ribbon from) |",
             "|---:|---:|---:|---:|"]
    for n in counts:
        f = pairwise_target(rule.max_false_refusal, n)
        likely, certain = rule.thresholds(n)
        lines.append(f"| {n} | {f:.3g} | {certain:.4f} | {likely:.4f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m dispenser.store.rule_table [--config PATH]`."""
    parser = argparse.ArgumentParser(prog="python -m dispenser.store.rule_table",
                                     description="Print the decision rule's thresholds for a "
                                     "few live counts (the table in docs/vision.md).")
    parser.add_argument("--config", help="configuration file (default: built-in defaults)")
    args = parser.parse_args(argv)
    try:
        print(threshold_table(load_settings(args.config)))
    except DispenserError as exc:
        parser.exit(exc.exit_code, f"python -m dispenser.store.rule_table: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The ephemeral template store: RAM-only ring buffer, deny window, hard delete at retention.

The privacy promise lives here: see `dispenser.store.store` for the layout, lifetimes and
locking, `dispenser.store.keys` for key shredding, `dispenser.store.exit_hooks` for
zeroisation on SIGTERM/SIGINT, and tests/audit/ for the tests that prove each guarantee.
`dispenser.store.rule` is the decision rule: the thresholds a decision compares its best
match with, derived from the live count and the embedder card's calibration.
"""

from dispenser.store.rule import (
    ImpostorTail,
    MatchRule,
    ThresholdRule,
    Thresholds,
    is_match,
    likely_threshold_for,
    rule_for,
    threshold_for,
)
from dispenser.store.store import (
    Decision,
    RawBuffers,
    Reservation,
    StoreCounters,
    TemplateStore,
    Verdict,
)

__all__ = ["Decision", "ImpostorTail", "MatchRule", "RawBuffers", "Reservation",
           "StoreCounters", "TemplateStore", "ThresholdRule", "Thresholds", "Verdict",
           "is_match", "likely_threshold_for", "rule_for", "threshold_for"]

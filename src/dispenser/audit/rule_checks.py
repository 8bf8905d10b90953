"""Invariant 8: the refusal threshold follows the crowd, from a measured tail.

The check reads the configured rule (dispenser.store.rule) and the shipped embedder card,
and drives a real TemplateStore on a virtual clock: no face, no camera. Probes are built
at chosen cosines to a live template, so the three outcomes are tested at the thresholds
the rule gives for the live count the store reports.
"""

from __future__ import annotations

import math

import numpy as np

from dispenser.audit.registry import Evidence, check, require
from dispenser.clock import VirtualClock
from dispenser.config import Settings
from dispenser.store import TemplateStore
from dispenser.store.rule import rule_for
from dispenser.store.store import Verdict

DIM = 128
CROWDS = (1, 20, 60, 200, 1000)
LIVE = 60
MARGIN = 0.01  # how far above / below a threshold the built probes score


def _probe_at(template: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose dot product with the unit `template` is exactly `cosine`."""
    other = rng.normal(size=template.size)
    other -= (other @ template) * template
    other /= np.linalg.norm(other)
    probe: np.ndarray = (cosine * template + math.sqrt(1.0 - cosine ** 2) * other)
    return probe.astype(np.float32)


@check("crowd-aware-refusal", invariant="8. A stranger is almost never refused",
       claim="Paper is refused only at or above a threshold that keeps the chance per visit "
             "of refusing a stranger under match.max_false_refusal for the number of live "
             "templates, derived from the worst measured group's impostor tail in the "
             "embedder's card; a match in the band below it gets the shorter ribbon.",
       method="The configured rule for 1, 20, 60, 200 and 1000 live templates: thresholds "
              "never fall, stay at or above the card's floor, and the card's tail gives "
              "1 - (1 - far(t))^N <= the target (unless t is at the ceiling); the card's "
              "calibration is measured. A store with 60 live templates (virtual clock) "
              "answers probes built 0.01 above the certain threshold, between the two "
              "thresholds and 0.01 below the likely one with DENY, SHORT and DISPENSE.")
def crowd_aware_refusal() -> Evidence:
    settings = Settings()
    rule = rule_for(settings)
    tail = rule.tail
    require(tail is not None and rule.threshold is None,
            "the configured rule is not derived from a calibrated embedder card")
    assert tail is not None
    require(tail.status == "measured", f"the card's calibration is {tail.status}")
    target = settings.match.max_false_refusal
    previous = -math.inf
    for n in CROWDS:
        likely, certain = rule.thresholds(n)
        require(certain >= previous, f"the threshold falls from {previous} to {certain} at "
                                     f"N = {n}")
        require(tail.floor <= likely <= certain, f"thresholds ({likely}, {certain}) at N = "
                                                 f"{n} leave [floor {tail.floor}, certain]")
        refused = -math.expm1(n * math.log1p(-tail.far_at(certain)))
        require(refused <= target * (1 + 1e-9) or certain >= tail.ceiling,
                f"at N = {n} the card's tail gives {refused:.2e} per visit, over {target}")
        previous = certain
    rng = np.random.default_rng(8)
    with TemplateStore(settings.store, rule=rule, dim=DIM, clock=VirtualClock(1000.0),
                       start_sweeper=False, zeroise_on_signals=False) as store:
        served = []
        for _ in range(LIVE):
            template = rng.normal(size=DIM)
            template /= np.linalg.norm(template)
            d = store.decide(template.astype(np.float32))
            require(d.dispense and d.reservation is not None, "a new face was not served")
            assert d.reservation is not None
            store.commit(d.reservation)
            served.append(template)
        likely, certain = rule.thresholds(LIVE)
        outcomes = {}
        for name, cosine in (("deny", certain + MARGIN), ("short", (likely + certain) / 2),
                             ("dispense", likely - MARGIN)):
            d = store.decide(_probe_at(served[0], cosine, rng))
            require(d.live_count == LIVE, f"the store saw {d.live_count} live templates")
            outcomes[name] = d.verdict
            if d.reservation is not None:
                store.rollback(d.reservation)
    require(outcomes == {"deny": Verdict.DENY, "short": Verdict.SHORT,
                         "dispense": Verdict.DISPENSE},
            f"outcomes at N = {LIVE}: {', '.join(f'{k} -> {v.name}' for k, v in outcomes.items())}")
    return {"worst_group": tail.worst_group, "card": tail.card,
            "thresholds": ", ".join(f"N={n}: {rule.certain(n):.3f}" for n in CROWDS),
            "max_false_refusal": target}

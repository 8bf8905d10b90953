"""The shorter ribbon through the service: a likely (not certain) match gets
`dispense.short_ribbon_mm` instead of a refusal, the display says so, the counters count
full, short and refused ribbons, and a failed short dispense leaves no template behind."""

from __future__ import annotations

from collections.abc import Callable

from service_doubles import Person, Rig

from dispenser.service import Message, State
from dispenser.store import MatchRule

# likely 0.80, certain 0.93: person 2 looks like person 1 at 0.85 (the short band), and
# scores about 0.99 against their own earlier template (refused).
RULE = MatchRule.fixed(0.93, likely=0.80)


def _visit(rig: Rig, pid: int, stay_s: float = 6.0) -> None:
    rig.scene = [Person(pid)]
    rig.run_for(stay_s)
    rig.scene = []
    rig.run_for(5.0)


def _rig(rig_factory: Callable[..., Rig]) -> Rig:
    rig = rig_factory(rule=RULE)
    rig.pipeline.lookalikes[2] = (1, 0.85)
    return rig


def test_a_lookalike_gets_the_shorter_ribbon_and_a_second_repeat_is_refused(
        rig_factory: Callable[..., Rig]) -> None:
    rig = _rig(rig_factory)
    _visit(rig, 1)
    assert rig.motor.dispensed == [600]
    assert Message.HERE_YOU_GO in rig.display.shown

    rig.clock.advance(30.0)
    _visit(rig, 2)                   # a stranger who looks like person 1
    assert rig.motor.dispensed == [600, 300]
    assert rig.display.shown[-3:] == [Message.DISPENSING, Message.SHORT_RIBBON,
                                      Message.WELCOME]
    assert rig.store.counters().shorts == 1

    rig.clock.advance(30.0)
    _visit(rig, 2)                   # the same stranger again: their own template refuses
    assert rig.motor.dispensed == [600, 300]
    assert Message.TRY_LATER in rig.display.shown
    c = rig.svc.counters
    assert (c.decisions, c.served, c.served_short, c.denied) == (3, 1, 1, 1)
    assert c.paper_mm == 900
    status = rig.svc.status()
    assert (status["served"], status["served_short"], status["denied"]) == (1, 1, 1)
    assert status["store_shorts"] == 1


def test_a_failed_short_dispense_is_rolled_back(rig_factory: Callable[..., Rig]) -> None:
    """Invariant 4: the jammed short ribbon leaves no template, so the lookalike's next
    visit gets the shorter ribbon again instead of a refusal."""
    rig = _rig(rig_factory)
    _visit(rig, 1)
    rig.clock.advance(30.0)
    rig.motor.fail_with = "jam"
    rig.scene = [Person(2)]
    assert rig.run_until(lambda: rig.svc.state is State.FAULT, 8.0)
    rig.scene = []
    rig.run_for(8.0)
    assert rig.svc.state is State.IDLE
    store = rig.store.counters()
    assert (store.shorts, store.rollbacks, store.occupancy) == (1, 1, 1)
    assert rig.svc.counters.dispense_failures == 1 and rig.svc.counters.served_short == 0

    _visit(rig, 2)
    assert rig.motor.dispensed == [600, 300]
    assert rig.svc.counters.served_short == 1 and rig.svc.counters.denied == 0

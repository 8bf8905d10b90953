"""Shared fixtures for the simulator tests: a short crowd scenario and its study."""

from __future__ import annotations

import pytest

from dispenser.config import Settings
from dispenser.embedders import embedder_card
from dispenser.sim.crowd import CrowdReport, study
from dispenser.sim.scenario import Scenario, Sweep
from dispenser.sim.similarity import card_table


@pytest.fixture(scope="session")
def short_scenario() -> Scenario:
    """Fifteen busy minutes with every kind of visit, and a small sweep."""
    return Scenario(name="short", description="test crowd", duration_min=15.0,
                    arrivals_per_hour=200.0, repeat_share=0.4, repeat_after_min=(1.0, 6.0),
                    staff=1, staff_every_min=4.0, button_share=0.1, roll_m=60.0,
                    sweep=Sweep(thresholds=(0.50, 0.60), deny_windows_s=(540.0,)))


@pytest.fixture(scope="session")
def short_study(short_scenario: Scenario) -> CrowdReport:
    # The people copy the default embedder card's measured worst group, as simulate does.
    table = card_table(embedder_card(Settings().vision.embedder))
    assert table is not None
    return study(short_scenario, Settings(), table, seed=3)

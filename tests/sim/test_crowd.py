"""Crowd mode: the real store scores every visit correctly, deterministically."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dispenser.config import Settings, StoreSettings
from dispenser.sim.crowd import (
    Crowd,
    CrowdReport,
    Kind,
    RunSettings,
    generate_crowd,
    run_crowd,
    study,
)
from dispenser.sim.identities import IdentityModel, Population
from dispenser.sim.report import summary_lines as report_summary
from dispenser.sim.report import to_json
from dispenser.sim.scenario import Scenario, ScenarioError, Sweep
from dispenser.sim.similarity import gaussian_table
from dispenser.store import threshold_for

# An embedder that never confuses anyone, so the scoring itself is what is tested.
_CRISP = gaussian_table(0.995, 0.002, 0.30, 0.05, source="crisp test embedder",
                        status="provisional")


def _crowd(visits: list[tuple[float, int]], button: set[int] | None = None) -> Crowd:
    """Visits (time, person) of members of the public, in time order."""
    times = np.array([t for t, _ in visits], dtype=np.float64)
    people = np.array([p for _, p in visits], dtype=np.int64)
    kind = np.array([Kind.REPEAT if p in people[:i] else Kind.VISITOR
                     for i, p in enumerate(people)], dtype=np.int8)
    pressed = np.array([i in (button or set()) for i in range(len(visits))])
    population = Population(IdentityModel.fit(_CRISP), seed=1)
    templates = population.templates(people, np.random.default_rng(2))
    return Crowd(times, people, kind, pressed, templates, duration_s=float(times[-1]) + 1)


_SCENARIO = Scenario(name="scripted", roll_m=100.0)
# Person 0 is served at ~7 s (hold 3 s + ribbon 4 s), comes back within the deny window,
# person 1 comes, then person 0 again after the window.
_VISITS = [(0.0, 0), (100.0, 0), (200.0, 1), (700.0, 0)]


def test_repeat_within_window_is_blocked_and_served_again_after_it() -> None:
    r = run_crowd(_crowd(_VISITS), _SCENARIO, Settings(), RunSettings(0.93, 540.0))
    assert (r.served, r.repeat_blocked, r.false_denials, r.false_admits) == (3, 1, 0, 0)
    assert r.paper_mm == 3 * 600 and r.free_paper_mm == 4 * 600
    assert r.paper_saved == 0.25


def test_a_threshold_nobody_reaches_lets_the_repeat_through_as_a_false_admit() -> None:
    r = run_crowd(_crowd(_VISITS), _SCENARIO, Settings(), RunSettings(1.0, 540.0))
    assert (r.served, r.repeat_blocked, r.false_admits) == (3, 0, 1)


def test_a_threshold_everyone_reaches_refuses_strangers_as_false_denials() -> None:
    r = run_crowd(_crowd(_VISITS), _SCENARIO, Settings(), RunSettings(-1.0, 540.0))
    # 0 served; 0 again blocked; 1 refused by 0's template; 0 after the window: still
    # refused, by the second entry? No: denied visits store nothing, so 0's only entry is
    # past the deny window and 0 is served again.
    assert (r.served, r.repeat_blocked, r.false_denials) == (2, 1, 1)


def test_templates_are_deleted_at_retention_and_occupancy_drains_to_zero() -> None:
    r = run_crowd(_crowd(_VISITS), _SCENARIO, Settings(), RunSettings(0.93, 540.0))
    assert r.peak_occupancy == 2
    assert r.deletions == 3
    assert r.occupancy[-1][1] == 0
    last_admit = 700.0 + 3.0
    assert all(n == 0 for t, n in r.occupancy if t >= last_admit + 600.0 + 1.0)


def test_an_empty_roll_stops_dispensing_and_rolls_back() -> None:
    tiny = Scenario(name="tiny-roll", roll_m=1.0)  # one 600 mm ribbon and 400 mm more
    visits = [(0.0, 0), (50.0, 1), (100.0, 2), (150.0, 1)]
    r = run_crowd(_crowd(visits), tiny, Settings(), RunSettings(0.93, 540.0))
    # 1 gets a short ribbon: rolled back, so 1 is not refused later as a repeat-taker;
    # afterwards the machine is out of paper and decides nothing.
    assert r.served == 1 and r.paper_mm == 1000 and r.no_paper == 3
    assert r.repeat_blocked == 0 and r.false_admits == 0
    assert r.roll_empty_at_s == 50.0 + 3.0 + 4.0
    assert r.peak_occupancy == 2  # 1's reservation, until it was rolled back


def test_the_no_scan_button_is_rate_limited_globally() -> None:
    visits = [(0.0, 0), (5.0, 1), (60.0, 2)]
    r = run_crowd(_crowd(visits, button={0, 1, 2}), _SCENARIO, Settings(),
                  RunSettings(0.93, 540.0))
    assert (r.button_served, r.button_refused) == (2, 1)
    assert r.paper_mm == 2 * Settings().dispense.button_ribbon_mm
    assert r.face_visits == 0 and r.peak_occupancy == 0


def test_generated_crowd_has_every_kind_of_visit(short_scenario: Scenario) -> None:
    model = IdentityModel.fit(_CRISP)
    crowd = generate_crowd(short_scenario, model, seed=3)
    kinds = set(crowd.kind.tolist())
    assert kinds == {Kind.VISITOR, Kind.REPEAT, Kind.STAFF}
    assert crowd.button.any() and not crowd.button[crowd.kind == Kind.STAFF].any()
    assert np.all(np.diff(crowd.arrival_s) >= 0)
    assert crowd.arrival_s[-1] < short_scenario.duration_min * 60


def test_same_seed_gives_byte_identical_json_and_another_seed_does_not(
        short_scenario: Scenario, short_study: CrowdReport) -> None:
    again = study(short_scenario, Settings(), short_study.table, seed=3)
    assert to_json(again) == to_json(short_study)
    other = generate_crowd(short_scenario, short_study.model, seed=4)
    assert not np.array_equal(other.arrival_s[:5], short_study.crowd.arrival_s[:5])


def test_study_runs_the_configured_settings_and_every_sweep_point(
        short_study: CrowdReport) -> None:
    points = {(r.threshold, r.deny_window_s) for r in short_study.runs}
    assert points == {(0.50, 540.0), (0.60, 540.0)}
    configured = short_study.configured
    # The configured rule: derived from the shipped card's tail at each decision's live
    # count, so the refusal threshold spans the rule's values over the counts seen.
    assert (configured.threshold, configured.deny_window_s) == (None, 540.0)
    low, high = configured.certain_range
    assert threshold_for(1, Settings()) <= low <= high <= threshold_for(1024, Settings())
    assert configured.served > 0 and configured.repeat_blocked > 0
    assert configured.paper_mm < configured.free_paper_mm


def test_a_full_store_evicts_the_oldest_and_fails_open() -> None:
    small = Settings(store=dataclasses.replace(Settings().store, capacity=2))
    # 0, 1, 2 fill and overflow a 2-slot store: 0's entry is evicted, so 0 coming back
    # inside the deny window is served again (a false admit caused by the eviction).
    visits = [(0.0, 0), (20.0, 1), (40.0, 2), (60.0, 0)]
    r = run_crowd(_crowd(visits), _SCENARIO, small, RunSettings(0.93, 540.0))
    assert r.evictions >= 1 and r.false_admits == 1 and r.false_denials == 0
    assert r.peak_occupancy == 2


def test_sweep_windows_longer_than_the_configured_retention_are_refused(
        short_scenario: Scenario) -> None:
    short = Settings(store=StoreSettings(deny_window_s=200.0, retention_s=300.0))
    with pytest.raises(ScenarioError, match="deny window 540 s exceeds"):
        study(short_scenario, short, _CRISP, seed=1)


def test_configured_settings_outside_the_sweep_are_run_too() -> None:
    scenario = Scenario(name="tiny", duration_min=5.0, arrivals_per_hour=120.0,
                        sweep=Sweep(thresholds=(0.9,), deny_windows_s=(300.0,)))
    result = study(scenario, Settings(), _CRISP, seed=2)
    assert [(r.threshold, r.deny_window_s) for r in result.runs] == [(0.9, 300.0)]
    assert (result.configured.threshold, result.configured.deny_window_s) == (None, 540.0)
    assert result.configured.certain_range[0] >= threshold_for(1, Settings())


def test_the_default_sweep_follows_the_tables_tail_and_runs_predict_false_denials() -> None:
    from pathlib import Path

    from dispenser.sim.similarity import load_similarity_file

    table = load_similarity_file(Path(__file__).parent.parent / "data"
                                 / "similarity_sface_like.toml")
    scenario = Scenario(name="peak-hour", arrivals_per_hour=200.0, repeat_share=0.2,
                        staff=0, button_share=0.0, sweep=Sweep(deny_windows_s=(540.0,)))
    result = study(scenario, Settings(), table, seed=1)
    # SFace-scale cosines where 1e-2 ... 1e-5 of the table's impostor pairs match.
    thresholds = [r.threshold for r in result.runs]
    assert thresholds == sorted(thresholds) and len(thresholds) == 7
    assert thresholds[0] == pytest.approx(0.35, abs=0.005)
    assert thresholds[-1] == pytest.approx(float(table.impostor.quantile(1 - 1e-5)), abs=0.001)
    # Strangers wrongly refused fall as the threshold rises, and each run's count stays
    # near what the table predicts for the same decisions (about 60 refusals at the two
    # loosest thresholds: the table's 1 - (1 - f)^N within a factor of 1.5).
    observed = [r.false_denials for r in result.runs]
    expected = [r.expected_false_denials for r in result.runs]
    assert observed == sorted(observed, reverse=True) and observed[0] > observed[-1]
    assert expected == sorted(expected, reverse=True)
    assert sum(observed[:2]) / 1.5 <= sum(expected[:2]) <= 1.5 * sum(observed[:2])
    # ... and what the synthetic people's own pairwise rate predicts, at every threshold
    # where the table expects at least 5: within a factor of 2 of the table's.
    model = [r.model_false_denials for r in result.runs]
    assert sum(observed[:2]) / 1.5 <= sum(model[:2]) <= 1.5 * sum(observed[:2])
    for by_model, by_table in zip(model, expected, strict=True):
        if by_table >= 5.0:
            assert by_table / 2 <= by_model <= 2 * by_table


def test_the_configured_rule_follows_the_live_count_and_gives_short_ribbons(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # As shipped with a calibrated card: the rule derived from its [calibration] tail (here
    # the SFace-like fixture's), with the default per-visit targets.
    import tomllib
    from pathlib import Path

    from dispenser.sim import crowd
    from dispenser.sim.similarity import load_similarity_file
    from dispenser.store.rule import ImpostorTail, MatchRule

    fixture = Path(__file__).parent.parent / "data" / "similarity_sface_like.toml"
    calibration = tomllib.loads(fixture.read_text(encoding="utf-8"))["calibration"]
    rule = MatchRule(tail=ImpostorTail.from_table(calibration, "fixture"))
    monkeypatch.setattr(crowd, "rule_for", lambda settings: rule)
    # Eight busy hours: about 40 strangers expected to get the shorter ribbon, so the
    # count's own spread (about 16 %) leaves the factor of 2 to the model.
    scenario = Scenario(name="peak-hours", duration_min=480.0, arrivals_per_hour=250.0,
                        repeat_share=0.2, staff=0, button_share=0.0, roll_m=3000.0,
                        sweep=Sweep(deny_windows_s=(540.0,)))
    settings = Settings()
    result = study(scenario, settings, load_similarity_file(fixture), seed=1)
    r = result.configured
    assert r.certain_range is not None
    low, high = r.certain_range
    # The first visitor meets an empty window; later ones up to the peak's live count.
    assert low == rule.certain(0) and rule.certain(20) < high <= rule.certain(r.peak_occupancy)
    # Near-misses get the shorter ribbon, about as often as the table predicts (~2 % of
    # strangers at the default max_false_short), and its paper is the shorter length.
    assert r.short_ribbons > 0 and r.expected_short_ribbons > 20.0
    assert r.expected_short_ribbons / 2 <= r.short_ribbons <= 2 * r.expected_short_ribbons
    assert r.model_short_ribbons / 2 <= r.short_ribbons <= 2 * r.model_short_ribbons
    full = r.served + r.false_admits + r.staff_served
    assert r.paper_mm <= full * settings.dispense.ribbon_mm + (
        r.short_ribbons + r.repeat_shortened) * settings.dispense.short_ribbon_mm
    assert r.repeat_blocked > 0
    lines = report_summary(result)
    assert any("given the shorter ribbon" in line for line in lines)
    assert any(line.strip().startswith(f"refusal threshold {low:.3f}-{high:.3f}")
               for line in lines)

"""The crowd report's views, with and without matplotlib."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispenser.sim import report
from dispenser.sim.crowd import CrowdReport


def test_report_without_matplotlib_keeps_json_and_tables(
        tmp_path: Path, short_study: CrowdReport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "_pyplot", lambda: None)
    written, note = report.write_report(short_study, tmp_path)
    assert note == report.MATPLOTLIB_MISSING
    assert sorted(p.name for p in written) == ["report.html", "report.json"]
    html = (tmp_path / "report.html").read_text()
    assert "matplotlib is not installed" in html and "<table>" in html
    assert "data:image/png" not in html


def test_summary_marks_the_configured_settings(short_study: CrowdReport) -> None:
    lines = report.summary_lines(short_study)
    marked = [line for line in lines if line.lstrip().startswith("*")]
    assert len(marked) == 1 and "rule" in marked[0] and "540" in marked[0]
    # ... and what the rule is: derived from the shipped card's measured tail.
    assert any("configured: certain threshold derived" in line for line in lines)
    assert any(line.strip().startswith("refusal threshold ") and "at the live counts met"
               in line for line in lines)
    # Which statistics the people copy: status, group and file, in the summary.
    assert any(line.strip().startswith("similarity statistics: measured: group 'kpop'")
               and "face_recognition_sface_2021dec" in line for line in lines)
    # Strangers wrongly refused, beside what the table and the synthetic people's own
    # pairwise rate predict for the same decisions.
    assert any("strangers wrongly refused" in line and "the table predicts" in line
               and "the synthetic people" in line for line in lines)


def _number_lists(node: object) -> list[int]:
    """Lengths of every list of plain numbers anywhere in a JSON document."""
    if isinstance(node, dict):
        return [n for v in node.values() for n in _number_lists(v)]
    if isinstance(node, list):
        own = [len(node)] if node and all(isinstance(v, int | float) for v in node) else []
        return own + [n for v in node for n in _number_lists(v)]
    return []


def test_json_holds_counts_only(short_study: CrowdReport) -> None:
    doc = json.loads(report.to_json(short_study))
    # No template (a list of 128 numbers) anywhere: only counts, rates and (time, n) pairs.
    assert max(_number_lists(doc)) <= 2
    assert doc["crowd"]["visits"] == len(short_study.crowd)

"""`dispenser audit`: checks run, the report is written in three formats, failures count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dispenser.audit import registry
from dispenser.audit.report import INVARIANTS, build_report, render_html, render_markdown
from dispenser.cli import main


def test_audit_lists_its_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--list"]) == 0
    out = capsys.readouterr().out
    for ident in ("config-retention-ceiling", "no-network", "model-inventory"):
        assert ident in out


def test_selected_checks_write_all_three_reports(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "--out", str(tmp_path), "--only", "no-network",
                 "--only", "config-retention-ceiling"])
    out = capsys.readouterr().out
    assert "PASS  no-network" in out and "PASS  config-retention-ceiling" in out
    report = json.loads((tmp_path / "audit-report.json").read_text())
    assert [c["ident"] for c in report["checks"]] == ["config-retention-ceiling", "no-network"]
    assert (tmp_path / "audit-report.md").read_text().startswith("# dispenser privacy audit")
    assert "<table>" in (tmp_path / "audit-report.html").read_text()
    # Invariants without a selected check have no evidence, so a partial run never passes.
    assert code == 1 and report["passed"] is False


def test_unknown_check_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--only", "nonsense"]) == 2
    assert capsys.readouterr().err.strip() == (
        "dispenser: error: unknown audit check: nonsense (see --list)")


def _result(ident: str, invariant: str, passed: bool) -> registry.CheckResult:
    return registry.CheckResult(ident, invariant, "claim", "method", passed,
                                reason="" if passed else "broken", evidence={"n": 1})


def test_report_fails_when_any_check_fails_and_lists_every_invariant() -> None:
    results = [_result(f"c{i}", name, True) for i, name in enumerate(INVARIANTS)]
    assert build_report(results)["passed"] is True
    results[3] = _result("c3", list(INVARIANTS)[3], False)
    report = build_report(results)
    assert report["passed"] is False
    assert [i["invariant"] for i in report["invariants"]] == list(INVARIANTS)
    assert "Why it failed: broken" in render_markdown(report)
    assert "class='fail'" in render_html(report)


def test_crashing_check_is_reported_as_failure_without_data() -> None:
    def boom() -> registry.Evidence:
        raise RuntimeError("secret payload 0.1 0.2 0.3")

    result = registry.run_check(registry.Check("boom", "1. Deny window", "c", "m", boom))
    assert not result.passed
    assert result.reason.startswith("unexpected RuntimeError at test_audit_command.py:")
    assert "secret" not in result.reason


def test_full_audit_passes_on_this_installation(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Every registered check, including the process memory scan through the real pipeline
    (zero surviving copies, positive control found), and every invariant has evidence."""
    code = main(["--log-level", "WARNING", "audit", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "audit-report.json").read_text())
    failed = [(c["ident"], c["reason"]) for c in report["checks"] if not c["passed"]]
    assert failed == []
    assert all(inv["checks"] != ["no evidence"] for inv in report["invariants"])
    scan = next(c for c in report["checks"] if c["ident"] == "memory-scan-after-retention")
    assert scan["evidence"]["surviving_copies"] == 0
    assert scan["evidence"]["positive_control_hits"] >= 2
    assert code == 0

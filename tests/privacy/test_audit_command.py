"""`dispenser audit`: checks run, the report is written in three formats, failures count."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

import dispenser
from dispenser.audit import registry
from dispenser.audit.inventory import tree_digest
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
    # The checks left out are "not run", not failures: what ran passed, so the run passes
    # and says it is partial.
    assert code == 0 and report["passed"] is True and report["complete"] is False
    assert "model-inventory" in report["not_run"] and "no-network" not in report["not_run"]
    status = {i["invariant"]: i["status"] for i in report["invariants"]}
    assert status["2. Retention"] == "PASS" and status["5. Nothing biometric leaves RAM"] \
        == "PASS" and status["6. No attributes"] == "NOT RUN"
    assert "NOT RUN model-inventory" in " ".join(out.split())
    assert out.strip().splitlines()[-1].startswith("PASS (partial: ")
    assert "FAIL" not in out and "no evidence" not in json.dumps(report)


def test_json_prints_the_report_and_keeps_the_check_lines_off_stdout(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["audit", "--out", str(tmp_path), "--only", "no-network", "--json"])
    out, err = capsys.readouterr()
    assert json.loads(out) == json.loads((tmp_path / "audit-report.json").read_text())
    assert "PASS  no-network" in err and "report written to" in err


def test_unknown_check_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--only", "nonsense"]) == 2
    assert capsys.readouterr().err.strip() == (
        "dispenser: error: unknown audit check: nonsense (see --list)")


def _result(ident: str, invariant: str, passed: bool) -> registry.CheckResult:
    return registry.CheckResult(ident, invariant, "claim", "method", passed,
                                reason="" if passed else "broken", evidence={"n": 1})


def _registered(results: list[registry.CheckResult]) -> list[registry.Check]:
    return [registry.Check(r.ident, r.invariant, r.claim, r.method, dict) for r in results]


def test_report_fails_when_any_check_fails_and_lists_every_invariant() -> None:
    results = [_result(f"c{i}", name, True) for i, name in enumerate(INVARIANTS)]
    assert build_report(results, _registered(results))["passed"] is True
    results[3] = _result("c3", list(INVARIANTS)[3], False)
    report = build_report(results, _registered(results))
    assert report["passed"] is False
    assert [i["invariant"] for i in report["invariants"]] == list(INVARIANTS)
    assert "Why it failed: broken" in render_markdown(report)
    assert "class='fail'" in render_html(report)


def test_an_invariant_without_any_check_fails_even_in_a_partial_run() -> None:
    results = [_result(f"c{i}", name, True) for i, name in enumerate(INVARIANTS)]
    registered = _registered(results)
    report = build_report(results[:2], registered[:3])   # c2 not run; c3.. do not exist
    status = [i["status"] for i in report["invariants"]]
    assert status == ["PASS", "PASS", "NOT RUN"] + ["FAIL"] * (len(INVARIANTS) - 3)
    assert report["invariants"][3]["checks"] == ["no evidence"]
    assert report["passed"] is False and report["not_run"] == ["c2"]


def test_report_says_what_was_audited(tmp_path: Path) -> None:
    """The sha256 of every installed file, per package digests, Python and library versions:
    a modified build gives a different report."""
    results = [_result(f"c{i}", name, True) for i, name in enumerate(INVARIANTS)]
    report = build_report(results, _registered(results))
    packages = report["installation"]["packages"]
    assert set(packages) == {"dispenser", "dispenser.models", "firmware_sim"}
    files = report["installation"]["files"]
    store = Path(dispenser.__file__).parent / "store" / "store.py"
    assert files["dispenser/store/store.py"] == hashlib.sha256(store.read_bytes()).hexdigest()
    assert any(rel.endswith(".onnx") for rel in files)
    assert not any("__pycache__" in rel for rel in files)
    assert sum(p["files"] for p in packages.values()) == len(files)
    for name in ("python", "numpy", "onnxruntime", "numba", "opencv-python-headless"):
        assert report["software"][name], name
    text = render_markdown(report)
    assert packages["dispenser"]["sha256"] in text and files["dispenser/store/store.py"] in text


def test_package_digest_is_the_sha256sum_listing_and_changes_with_any_file(
        tmp_path: Path) -> None:
    copy = tmp_path / "dispenser"
    shutil.copytree(Path(dispenser.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__", "models"))
    digest, _ = tree_digest(copy)
    shell = subprocess.run(
        "find . -type f ! -path '*/__pycache__/*' -printf '%P\\n' | LC_ALL=C sort "
        "| xargs -d '\\n' sha256sum | sha256sum", shell=True, cwd=copy,
        capture_output=True, text=True, check=True)
    assert shell.stdout.split()[0] == digest
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.pyc").write_bytes(b"derived")
    assert tree_digest(copy)[0] == digest
    with (copy / "store" / "kernels.py").open("a") as f:
        f.write("# changed\n")
    assert tree_digest(copy)[0] != digest


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
    assert scan["evidence"]["templates_admitted"] >= 1000
    bounded = {c["ident"] for c in report["checks"]
               if c["invariant"] == "7. Bounded everything"}
    assert {"full-store-fails-open", "bounded-queues", "bounded-retries",
            "motor-run-limit"} <= bounded
    assert report["complete"] is True and report["not_run"] == []
    assert code == 0

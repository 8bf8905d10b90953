"""The audit report: every invariant in plain language, how it was tested, the result,
what was audited (the sha256 of every installed file of the program and its models, the
Python and library versions) and the machine, as Markdown, JSON and HTML.

An invariant with no check behind it is reported as failed ("no evidence"): the report can
never look complete by leaving something out. An invariant whose checks exist but were
left out of this run (`audit --only`) is reported as "not run", and so is the run: it
passes when every check that ran passed, and says it is partial.
"""

from __future__ import annotations

import html
import json
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from dispenser import __version__
from dispenser.audit.registry import Check, CheckResult

# The invariants (docs/privacy.md), in the words the report uses.
INVARIANTS: dict[str, str] = {
    "1. Deny window": "A probe matches only entries younger than the deny window (default "
                      "540 s); an older entry can never cause a denial.",
    "2. Retention": "Every template and every copy of it is overwritten with zeros no later "
                    "than retention + sweep period after admission; retention <= 600 s.",
    "3. Time": "Ages are measured on a clock that counts through suspend and ignores "
               "wall-clock changes.",
    "4. Not stored": "Denied and rejected probes are not stored; a failed dispense leaves no "
                     "template behind.",
    "5. Nothing biometric leaves RAM": "No frame, crop, landmark set or template is written "
                                       "to disk, a log, an exception or a socket; no network "
                                       "socket; memory locked; no core dumps.",
    "6. No attributes": "The only model outputs are face boxes/landmarks and an identity "
                        "template.",
    "7. Bounded everything": "Fixed-capacity store that fails open, bounded queues and "
                             "retries, a motor that cannot run past its safety limit.",
    "8. A stranger is almost never refused": "A full refusal needs a match above the "
                                             "threshold that keeps the per-visit chance of "
                                             "refusing a stranger under the target for the "
                                             "live count, from the worst measured group; "
                                             "weaker matches get a shorter ribbon.",
}


def _versions() -> dict[str, str]:
    out = {"dispenser": __version__,
           "python": f"{platform.python_implementation()} {platform.python_version()}"}
    for dist in ("numpy", "onnxruntime", "numba", "llvmlite", "opencv-python-headless",
                 "pyserial"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def build_report(results: list[CheckResult], registered: list[Check]) -> dict[str, Any]:
    """The report as one JSON-ready dict; `registered` is every check there is (those not
    in `results` were not run)."""
    from dispenser.audit.inventory import installation

    ran = {r.ident for r in results}
    invariants = []
    for name, text in INVARIANTS.items():
        mine = [r for r in results if r.invariant == name]
        skipped = [c.ident for c in registered if c.invariant == name and c.ident not in ran]
        if mine:
            status = PASS if all(r.passed for r in mine) else FAIL
        else:
            status = NOT_RUN if skipped else FAIL
        invariants.append({"invariant": name, "statement": text, "status": status,
                           "checks": [r.ident for r in mine] or (
                               [] if skipped else ["no evidence"]),
                           "not_run": skipped})
    not_run = [c.ident for c in registered if c.ident not in ran]
    passed = all(i["status"] != FAIL for i in invariants)
    return {
        "title": "dispenser privacy audit",
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "passed": passed,
        "complete": not not_run,
        "not_run": not_run,
        "software": _versions(),
        "installation": installation(),
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "cpu": _cpu_model()},
        "invariants": invariants,
        "checks": [asdict(r) for r in results],
    }


def verdict(report: dict[str, Any]) -> str:
    """PASS / FAIL, and how partial the run was."""
    mark = PASS if report["passed"] else FAIL
    if report["complete"]:
        return mark
    return f"{mark} (partial: {len(report['not_run'])} checks not run)"


PASS, FAIL, NOT_RUN = "PASS", "FAIL", "NOT RUN"


def _mark(passed: bool) -> str:
    return PASS if passed else FAIL


def render_markdown(report: dict[str, Any]) -> str:
    """Human-readable report for auditors."""
    lines = [f"# {report['title']}", "",
             f"Result: **{verdict(report)}**, created {report['created_utc']}", "",
             "## Invariants", "", "| invariant | result | evidence | not run |",
             "|---|---|---|---|"]
    for inv in report["invariants"]:
        lines.append(f"| {inv['invariant']}: {inv['statement']} | {inv['status']} | "
                     f"{', '.join(inv['checks'])} | {', '.join(inv['not_run'])} |")
    lines += ["", "## Checks", ""]
    for c in report["checks"]:
        lines += [f"### {c['ident']}: {_mark(c['passed'])}", "",
                  f"- Guarantee ({c['invariant']}): {c['claim']}",
                  f"- How it is tested: {c['method']}"]
        if c["reason"]:
            lines.append(f"- Why it failed: {c['reason']}")
        if c["evidence"]:
            shown = ", ".join(f"{k} = {v}" for k, v in c["evidence"].items())
            lines.append(f"- Evidence: {shown}")
        lines += [f"- Time: {c['seconds']:.2f} s", ""]
    lines += ["## Software", ""] + [f"- {k}: {v}" for k, v in report["software"].items()]
    lines += ["", "## What was audited (sha256 of the installed files)", ""]
    lines += [f"- {name}: `{p['sha256']}` ({p['files']} files in {p['folder']})"
              for name, p in report["installation"]["packages"].items()]
    lines += ["", "Every file (the JSON report has the same list):", ""]
    lines += [f"- `{sha}`  {rel}" for rel, sha in report["installation"]["files"].items()]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in report["machine"].items()]
    return "\n".join(lines) + "\n"


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of the same content (no scripts, no external files)."""
    esc = html.escape
    rows = "".join(
        f"<tr class='{i['status'].lower().replace(' ', '')}'><td>{esc(i['invariant'])}</td>"
        f"<td>{esc(i['statement'])}</td><td>{i['status']}</td>"
        f"<td>{esc(', '.join(i['checks']))}</td><td>{esc(', '.join(i['not_run']))}</td>"
        "</tr>" for i in report["invariants"])
    checks = "".join(
        f"<tr class='{_mark(c['passed']).lower()}'><td>{esc(c['ident'])}</td>"
        f"<td>{esc(c['claim'])}</td><td>{esc(c['method'])}</td><td>{_mark(c['passed'])}"
        f"{(' — ' + esc(c['reason'])) if c['reason'] else ''}</td>"
        f"<td>{esc(', '.join(f'{k}={v}' for k, v in c['evidence'].items()))}</td></tr>"
        for c in report["checks"])
    meta = "".join(f"<li>{esc(k)}: {esc(str(v))}</li>" for k, v in
                   {**report["software"], **report["machine"]}.items())
    packages = "".join(f"<li>{esc(name)}: <code>{esc(p['sha256'])}</code> ({p['files']} "
                       f"files in {esc(p['folder'])})</li>"
                       for name, p in report["installation"]["packages"].items())
    files = "".join(f"<li><code>{esc(sha)}</code> {esc(rel)}</li>"
                    for rel, sha in report["installation"]["files"].items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>dispenser audit</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:4px;vertical-align:top}table{border-collapse:collapse}.pass td:nth-child(3)"
        "{color:#060}.fail{background:#fdd}</style></head><body>"
        f"<h1>{esc(report['title'])}: {esc(verdict(report))}</h1>"
        f"<p>created {esc(report['created_utc'])}</p><h2>Invariants</h2><table>"
        "<tr><th>invariant</th><th>statement</th><th>result</th><th>checks</th>"
        f"<th>not run</th></tr>{rows}"
        "</table><h2>Checks</h2><table><tr><th>check</th><th>guarantee</th><th>how tested"
        f"</th><th>result</th><th>evidence</th></tr>{checks}</table>"
        f"<h2>Software and machine</h2><ul>{meta}</ul><h2>What was audited (sha256 of "
        f"the installed files)</h2><ul>{packages}</ul><ul>{files}</ul>"
        "</body></html>\n")


def write_report(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write audit-report.{md,json,html} into `out_dir`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "audit-report.md", out_dir / "audit-report.json",
             out_dir / "audit-report.html"]
    paths[0].write_text(render_markdown(report), encoding="utf-8")
    paths[1].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths[2].write_text(render_html(report), encoding="utf-8")
    return paths

"""The audit report: every invariant in plain language, how it was tested, the result,
the software version, the model hashes and the machine, as Markdown, JSON and HTML.

An invariant with no check behind it is reported as failed ("no evidence"): the report can
never look complete by leaving something out.
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
from dispenser.audit.registry import CheckResult

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
}


def _versions() -> dict[str, str]:
    out = {"dispenser": __version__, "python": platform.python_version()}
    for dist in ("numpy", "onnxruntime", "numba", "opencv-python-headless", "pyserial"):
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


def _model_hashes() -> dict[str, str]:
    from dispenser.audit.model_checks import _models_dir
    from dispenser.vision.model_files import load_card

    return {p.stem: load_card(p.stem, p).sha256 for p in sorted(_models_dir().glob("*.toml"))}


def build_report(results: list[CheckResult]) -> dict[str, Any]:
    """The report as one JSON-ready dict."""
    invariants = []
    for name, text in INVARIANTS.items():
        mine = [r for r in results if r.invariant == name]
        invariants.append({"invariant": name, "statement": text,
                           "passed": bool(mine) and all(r.passed for r in mine),
                           "checks": [r.ident for r in mine] or ["no evidence"]})
    return {
        "title": "dispenser privacy audit",
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "passed": all(i["passed"] for i in invariants),
        "software": _versions(),
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "cpu": _cpu_model()},
        "models_sha256": _model_hashes(),
        "invariants": invariants,
        "checks": [asdict(r) for r in results],
    }


def _mark(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def render_markdown(report: dict[str, Any]) -> str:
    """Human-readable report for auditors."""
    lines = [f"# {report['title']}", "",
             f"Result: **{_mark(report['passed'])}**, created {report['created_utc']}", "",
             "## Invariants", "", "| invariant | result | evidence |", "|---|---|---|"]
    for inv in report["invariants"]:
        lines.append(f"| {inv['invariant']}: {inv['statement']} | {_mark(inv['passed'])} | "
                     f"{', '.join(inv['checks'])} |")
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
    lines += ["", "## Models (sha256)", ""]
    lines += [f"- {k}: `{v}`" for k, v in report["models_sha256"].items()]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in report["machine"].items()]
    return "\n".join(lines) + "\n"


def render_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of the same content (no scripts, no external files)."""
    esc = html.escape
    rows = "".join(
        f"<tr class='{_mark(i['passed']).lower()}'><td>{esc(i['invariant'])}</td>"
        f"<td>{esc(i['statement'])}</td><td>{_mark(i['passed'])}</td>"
        f"<td>{esc(', '.join(i['checks']))}</td></tr>" for i in report["invariants"])
    checks = "".join(
        f"<tr class='{_mark(c['passed']).lower()}'><td>{esc(c['ident'])}</td>"
        f"<td>{esc(c['claim'])}</td><td>{esc(c['method'])}</td><td>{_mark(c['passed'])}"
        f"{(' — ' + esc(c['reason'])) if c['reason'] else ''}</td>"
        f"<td>{esc(', '.join(f'{k}={v}' for k, v in c['evidence'].items()))}</td></tr>"
        for c in report["checks"])
    meta = "".join(f"<li>{esc(k)}: {esc(str(v))}</li>" for k, v in
                   {**report["software"], **report["machine"]}.items())
    models = "".join(f"<li>{esc(k)}: <code>{esc(v)}</code></li>"
                     for k, v in report["models_sha256"].items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>dispenser audit</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;"
        "padding:4px;vertical-align:top}table{border-collapse:collapse}.pass td:nth-child(3)"
        "{color:#060}.fail{background:#fdd}</style></head><body>"
        f"<h1>{esc(report['title'])}: {_mark(report['passed'])}</h1>"
        f"<p>created {esc(report['created_utc'])}</p><h2>Invariants</h2><table>"
        f"<tr><th>invariant</th><th>statement</th><th>result</th><th>checks</th></tr>{rows}"
        "</table><h2>Checks</h2><table><tr><th>check</th><th>guarantee</th><th>how tested"
        f"</th><th>result</th><th>evidence</th></tr>{checks}</table>"
        f"<h2>Software and machine</h2><ul>{meta}</ul><h2>Models</h2><ul>{models}</ul>"
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

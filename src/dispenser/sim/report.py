"""The crowd report: one JSON document, a terminal table, PNG plots and a self-contained HTML
page an operator can choose settings from.

The JSON is the source of every other view and is byte-identical for the same scenario,
seed and configuration (numbers are rounded to fixed precision; nothing depends on wall
time). Plots need matplotlib (the `report` extra); without it the report says so and keeps
the tables.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dispenser.errors import DispenserError
from dispenser.sim.crowd import CrowdReport, Kind, RunResult
from dispenser.store.rule import rule_for, threshold_for

FORMAT = "dispenser-crowd-report/1"
MATPLOTLIB_MISSING = ("plots skipped: matplotlib is not installed (pip install '.[report]' "
                      "in the source folder, or pip install matplotlib); the report keeps "
                      "its tables")

WHAT_RUNS = {
    "real": ["dispenser.store.TemplateStore (matching, deny window, retention deletion, "
             "eviction, key shredding) on a virtual clock",
             "dispenser.service.button.ButtonGate (no-scan rate limit)"],
    "modelled": ["face templates: synthetic identities fitted to a measured similarity "
                 "table, impostor tail included (dispenser.sim.identities)",
                 "the visit: one FIFO queue, hold-still + ribbon feed + result message, "
                 "decision at the end of the hold-still",
                 "the controller and roll: a paper counter at the simulated controller's "
                 "nominal feed speed"],
}


def _r(x: float, digits: int = 6) -> float:
    return round(float(x), digits)


def run_record(run: RunResult) -> dict[str, Any]:
    """One run as plain numbers (no time series)."""
    return {
        "threshold": None if run.threshold is None else _r(run.threshold, 4),
        "deny_window_s": _r(run.deny_window_s, 3),
        "certain_range": (None if run.certain_range is None
                          else [_r(t, 4) for t in run.certain_range]),
        "served": run.served, "short_ribbons": run.short_ribbons,
        "repeat_blocked": run.repeat_blocked, "repeat_shortened": run.repeat_shortened,
        "false_denials": run.false_denials,
        "expected_false_denials": _r(run.expected_false_denials),
        "expected_short_ribbons": _r(run.expected_short_ribbons),
        "model_false_denials": _r(run.model_false_denials),
        "model_short_ribbons": _r(run.model_short_ribbons),
        "false_admits": run.false_admits,
        "staff_served": run.staff_served, "staff_denied": run.staff_denied,
        "button_served": run.button_served, "button_refused": run.button_refused,
        "gave_up": run.gave_up, "no_paper": run.no_paper,
        "paper_mm": run.paper_mm, "free_paper_mm": run.free_paper_mm,
        "paper_saved": _r(run.paper_saved), "false_denial_rate": _r(run.false_denial_rate),
        "repeat_block_rate": _r(run.repeat_block_rate),
        "roll_empty_at_s": None if run.roll_empty_at_s is None else _r(run.roll_empty_at_s, 3),
        "free_roll_empty_at_s": (None if run.free_roll_empty_at_s is None
                                 else _r(run.free_roll_empty_at_s, 3)),
        "evictions": run.evictions, "deletions": run.deletions,
        "peak_occupancy": run.peak_occupancy,
        "wait_mean_s": _r(run.wait_mean_s, 3), "wait_max_s": _r(run.wait_max_s, 3),
    }


def to_json(report: CrowdReport) -> str:
    """The report document (deterministic: same inputs, same bytes)."""
    c, sc, st = report.crowd, report.scenario, report.settings
    kinds = np.bincount(c.kind.astype(np.int64), minlength=len(Kind))
    scenario = dataclasses.asdict(sc)
    doc = {
        "format": FORMAT,
        "mode": "crowd",
        "seed": report.seed,
        "scenario": scenario,
        "what_runs": WHAT_RUNS,
        "settings": {
            "rule": rule_for(st).describe(), "threshold": st.match.threshold,
            "deny_window_s": st.store.deny_window_s,
            "retention_s": st.store.retention_s, "capacity": st.store.capacity,
            "hold_still_s": st.vision.hold_still_s, "message_s": st.display.message_s,
            "ribbon_mm": st.dispense.ribbon_mm, "short_ribbon_mm": st.dispense.short_ribbon_mm,
            "button_ribbon_mm": st.dispense.button_ribbon_mm,
            "button_min_interval_s": st.dispense.button_min_interval_s,
        },
        "identity_model": _identity_model(report),
        "crowd": {
            "visits": len(c), "people": len(np.unique(c.person)),
            "first_visits": int(kinds[Kind.VISITOR]), "repeat_visits": int(kinds[Kind.REPEAT]),
            "staff_visits": int(kinds[Kind.STAFF]), "button_visits": int(c.button.sum()),
            "duration_s": _r(c.duration_s, 3),
        },
        "configured": run_record(report.configured),
        "configured_occupancy": [[_r(t, 3), n] for t, n in report.configured.occupancy],
        "sweep": [run_record(r) for r in report.runs],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


REPORTED_P = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)


def _identity_model(report: CrowdReport) -> dict[str, Any]:
    """Where the synthetic people's statistics came from, the fitted parameters, and the
    table's quantiles beside the sampled ones (keyed by probability: the report holds no
    list longer than a (time, count) pair)."""
    table, sampled = report.table, report.sampled
    p = np.array(REPORTED_P)
    kinds = {"impostor": (table.impostor, sampled.impostor),
             "genuine": (table.genuine, sampled.genuine),
             "genuine_same_session": (table.genuine_same_session, sampled.same_session)}
    fitted = dataclasses.asdict(report.model)
    fitted["lookalike"] = {f"level_{k + 1}": _r(w) for k, w in enumerate(fitted["lookalike"])}
    return {
        "source": table.describe(), "status": table.status, "group": table.group,
        "file": table.source,
        "fitted": {k: _r(v) if isinstance(v, float) else v for k, v in fitted.items()},
        "quantiles": {kind: {f"{prob:g}": {"table": None if q is None else _r(t),
                                           "sampled": _r(x)}
                             for prob, t, x in zip(
                                 REPORTED_P,
                                 [None] * len(p) if q is None else q.quantile(p),
                                 np.quantile(values, p), strict=True)}
                      for kind, (q, values) in kinds.items()},
    }


def _range(span: tuple[float, float] | None) -> str:
    if span is None:
        return "- (no face decision)"
    low, high = span
    return f"{low:.3f}" if low == high else f"{low:.3f}-{high:.3f}"


def _minutes(s: float | None) -> str:
    return "-" if s is None else f"{s / 60:.0f} min"


def summary_lines(report: CrowdReport) -> list[str]:
    """The terminal view: the configured run, then the sweep table."""
    c, r = report.crowd, report.configured
    head = [
        f"scenario {report.scenario.name}: {report.scenario.description}",
        f"  {len(c)} visits in {c.duration_s / 60:.0f} simulated minutes "
        f"(seed {report.seed})",
        f"  similarity statistics: {report.table.describe()}",
        f"  configured: {rule_for(report.settings).describe()}; deny window "
        f"{r.deny_window_s:g} s",
        f"    refusal threshold {_range(r.certain_range)} at the live counts met",
        f"    paper {r.paper_mm / 1000:.1f} m vs {r.free_paper_mm / 1000:.1f} m for a free "
        f"dispenser (saved {100 * r.paper_saved:.0f}%); roll empty: machine "
        f"{_minutes(r.roll_empty_at_s)}, free {_minutes(r.free_roll_empty_at_s)}",
        f"    served {r.served}, repeat-takes blocked/shortened {r.repeat_blocked}/"
        f"{r.repeat_shortened}, false admits {r.false_admits}, staff served/denied "
        f"{r.staff_served}/{r.staff_denied}",
        f"    strangers wrongly refused {r.false_denials} "
        f"({100 * r.false_denial_rate:.2f}% of eligible face visits), given the shorter "
        f"ribbon {r.short_ribbons}; for the same decisions the table predicts "
        f"{r.expected_false_denials:.2f} and {r.expected_short_ribbons:.2f}, the synthetic "
        f"people {r.model_false_denials:.2f} and {r.model_short_ribbons:.2f}",
        f"    button served/refused {r.button_served}/{r.button_refused}, gave up queueing "
        f"{r.gave_up}, evictions {r.evictions}, deletions {r.deletions}, "
        f"peak occupancy {r.peak_occupancy}, wait mean/max {r.wait_mean_s:.0f}/"
        f"{r.wait_max_s:.0f} s",
        "",
        "  sweep: threshold  deny_s  paper_saved  blocked  false_denials  false_admits  peak",
    ]
    rows = []
    for run in [r, *report.runs]:
        mark, threshold = ("*", "    rule") if run is r else (" ", f"{run.threshold:8.3f}")
        rows.append(f"       {mark}{threshold}  {run.deny_window_s:6.0f}  "
                    f"{100 * run.paper_saved:10.1f}%  {run.repeat_blocked:7d}  "
                    f"{run.false_denials:13d}  {run.false_admits:12d}  "
                    f"{run.peak_occupancy:4d}")
    return head + rows


# ------------------------------------------------------------------------------ plots

def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend, or None if not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    # Fixed metadata: the PNG bytes then depend only on the data.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _by_window(runs: list[RunResult]) -> dict[float, list[RunResult]]:
    groups: dict[float, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.deny_window_s, []).append(run)
    return groups


def _plot_tradeoff(plt: Any, report: CrowdReport) -> Any:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for window, runs in _by_window(report.runs).items():
        x = [1000 * r.false_denial_rate for r in runs]
        y = [100 * r.paper_saved for r in runs]
        ax.plot(x, y, marker="o", label=f"deny window {window:g} s")
        for r, xi, yi in zip(runs, x, y, strict=True):
            ax.annotate(f"{r.threshold:g}", (xi, yi), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    ax.set_xlabel("false denials per 1000 eligible face visits")
    ax.set_ylabel("paper saved vs a free dispenser (%)")
    ax.set_title("Paper saved vs strangers refused (labels: match threshold)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _plot_sweep(plt: Any, report: CrowdReport) -> Any:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for window, runs in _by_window(report.runs).items():
        t = [r.threshold for r in runs]
        left.plot(t, [r.false_denials for r in runs], marker="o", label=f"{window:g} s")
        right.plot(t, [100 * r.repeat_block_rate for r in runs], marker="o",
                   label=f"{window:g} s")
    left.set_title("false denials (someone else's template)")
    right.set_title("repeat-takes blocked within the deny window (%)")
    for ax in (left, right):
        ax.set_xlabel("match threshold (cosine)")
        ax.grid(alpha=0.3)
        ax.legend(title="deny window")
    return fig


def _plot_timeline(plt: Any, report: CrowdReport) -> Any:
    run = report.configured
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    t, n = zip(*run.occupancy, strict=True) if run.occupancy else ((), ())
    top.step([x / 60 for x in t], n, where="post")
    top.set_ylabel("templates in RAM")
    top.set_title(f"Store occupancy (configured rule, deny window "
                  f"{run.deny_window_s:g} s, retention {report.settings.store.retention_s:g} s)")
    if run.paper_timeline:
        at, used, free = zip(*run.paper_timeline, strict=True)
        bottom.plot([x / 60 for x in at], [u / 1000 for u in used], label="this machine")
        bottom.plot([x / 60 for x in at], [f / 1000 for f in free], label="free dispenser")
    bottom.axhline(report.scenario.roll_m, color="grey", linestyle="--", label="one roll")
    bottom.set_xlabel("simulated minutes")
    bottom.set_ylabel("paper given out (m)")
    bottom.legend()
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return fig


def _plot_similarity(plt: Any, report: CrowdReport) -> Any:
    fig, ax = plt.subplots(figsize=(7, 4))
    sampled = report.sampled
    bins = np.linspace(min(sampled.impostor.min(), sampled.genuine.min()), 1.0, 80)
    ax.hist(sampled.impostor, bins=bins, alpha=0.6, density=True, label="different people")
    ax.hist(sampled.genuine, bins=bins, alpha=0.6, density=True, label="same person")
    ax.hist(sampled.same_session, bins=bins, alpha=0.4, density=True,
            label="same person, same session")
    for th in sorted({run.threshold for run in report.runs if run.threshold is not None}):
        ax.axvline(th, color="grey", linewidth=0.6)
    ax.axvline(threshold_for(1, report.settings), color="red",
               label="configured threshold (1 live template)")
    ax.set_xlabel("cosine similarity of two templates (synthetic identity model)")
    group = f" of group {report.table.group!r}" if report.table.group else ""
    ax.set_title(f"Synthetic identities fitted to {report.table.status} statistics{group}")
    ax.legend()
    return fig


PLOTS: dict[str, Callable[[Any, CrowdReport], Any]] = {
    "tradeoff.png": _plot_tradeoff,
    "sweep.png": _plot_sweep,
    "timeline.png": _plot_timeline,
    "similarity.png": _plot_similarity,
}


def render_plots(report: CrowdReport) -> dict[str, bytes] | None:
    """PNG bytes per plot name, or None when matplotlib is not installed."""
    plt = _pyplot()
    if plt is None:
        return None
    images = {}
    for name, draw in PLOTS.items():
        fig = draw(plt, report)
        fig.tight_layout()
        images[name] = _png(fig)
        plt.close(fig)
    return images


# ------------------------------------------------------------------------------- HTML

def to_html(report: CrowdReport, images: dict[str, bytes] | None) -> str:
    """A single page with the plots embedded (base64), readable offline."""
    doc = json.loads(to_json(report))
    esc = html.escape
    cols = ["threshold", "deny_window_s", "paper_saved", "served", "short_ribbons",
            "repeat_blocked", "false_denials", "false_admits", "staff_denied",
            "peak_occupancy", "evictions"]
    header = "".join(f"<th>{esc(c)}</th>" for c in cols)
    rows = []
    for run in [doc["configured"], *doc["sweep"]]:
        cls = ' class="configured"' if run["threshold"] is None else ""
        cells = "".join(f"<td>{esc(_cell(run[c], c))}</td>" for c in cols)
        rows.append(f"<tr{cls}>{cells}</tr>")
    if images is None:
        figures = f"<p><em>{esc(MATPLOTLIB_MISSING)}</em></p>"
    else:
        figures = "".join(
            f'<figure><img alt="{esc(name)}" src="data:image/png;base64,'
            f'{base64.b64encode(data).decode("ascii")}"><figcaption>{esc(name)}</figcaption>'
            "</figure>" for name, data in images.items())
    params = {**{k: v for k, v in doc["scenario"].items() if k != "sweep"},
              **{f"settings.{k}": v for k, v in doc["settings"].items()},
              "identity model": doc["identity_model"]["source"]}
    param_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>"
                         for k, v in params.items())
    real = "".join(f"<li>{esc(x)}</li>" for x in WHAT_RUNS["real"])
    modelled = "".join(f"<li>{esc(x)}</li>" for x in WHAT_RUNS["modelled"])
    summary = "<br>".join(esc(line) for line in summary_lines(report)[:9])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>dispenser crowd report: {esc(report.scenario.name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; text-align: right; }}
tr.configured {{ background: #fff3c4; font-weight: bold; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; }}
code, .mono {{ font-family: monospace; }}
</style></head><body>
<h1>Crowd simulation: {esc(report.scenario.name)}</h1>
<p class="mono">{summary}</p>
<h2>Scenario and settings</h2><table>{param_rows}</table>
<h2>What ran</h2><p>Real code:</p><ul>{real}</ul><p>Modelled:</p><ul>{modelled}</ul>
<h2>Settings sweep</h2>
<p>Highlighted: the configured rule (thresholds that follow the live count, and the
shorter-ribbon band); the other rows use one fixed threshold each. A false denial is a
person refused because someone else's template matched; a false admit is a repeat-taker
inside the deny window who got the full ribbon again.</p>
<table><tr>{header}</tr>{''.join(rows)}</table>
<h2>Plots</h2>{figures}
<h2>Data</h2><p>The same numbers as JSON: <code>report.json</code> beside this page.</p>
</body></html>
"""


def _cell(value: Any, column: str) -> str:
    if column == "paper_saved":
        return f"{100 * value:.1f}%"
    if column == "threshold" and value is None:
        return "configured rule"
    return f"{value:g}" if isinstance(value, float) else str(value)


def write_report(report: CrowdReport, directory: Path) -> tuple[list[Path], str | None]:
    """Write report.json, report.html and the PNGs; return the paths and a note (or None)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DispenserError(f"simulate: cannot create report directory {directory}: "
                             f"{exc.strerror}") from None
    images = render_plots(report)
    written = []
    files: dict[str, bytes] = {"report.json": to_json(report).encode("utf-8"),
                               "report.html": to_html(report, images).encode("utf-8")}
    files.update(images or {})
    for name, data in files.items():
        path = directory / name
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise DispenserError(f"simulate: cannot write {path}: {exc.strerror}") from None
        written.append(path)
    return written, (None if images is not None else MATPLOTLIB_MISSING)

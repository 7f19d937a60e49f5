"""The page a search writes: best accuracy so far against the default model, what
mattered, and the top trials side by side (server-side SVG, no script)."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from despina.core.config import AuditConfig


@dataclass(frozen=True)
class StudyResult:
    """What a search found: the chosen trial's parameters and config, every trial, the
    default model's accuracy and the budget the choice respected."""

    best_params: dict[str, Any]
    best_config: AuditConfig
    best_accuracy: float
    default_accuracy: float | None
    budget_minutes: float
    trials: list[dict[str, Any]]
    out: Path
    objectives: tuple[str, ...] = ("accuracy", "cost")


def importances(rows: list[dict[str, Any]], distributions: dict[str, Any]) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) over the completed trials' rows, rebuilt as
    an in-memory study: the rows are what every worker's results add up to."""
    import optuna

    complete = [r for r in rows if r["state"] == "COMPLETE" and r["accuracy"] is not None]
    if len(complete) < 3:
        return {}
    study = optuna.create_study(direction="maximize")
    for r in complete:
        params = {k: v for k, v in r["params"].items() if k in distributions}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={k: distributions[k] for k in params},
                value=r["accuracy"],
            )
        )
    try:
        return optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError, ZeroDivisionError):
        return {}


def best_so_far(rows: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(trial number, the best accuracy of the completed trials up to it)."""
    best, points = 0.0, []
    for r in sorted(rows, key=lambda r: r["number"]):
        if r["state"] == "COMPLETE" and r["accuracy"] is not None:
            best = max(best, r["accuracy"])
            points.append((r["number"], best))
    return points


def report_html(result: StudyResult, space: Any) -> str:
    """One page: best-so-far accuracy by trial with the default's score as a line, the
    Pareto front of accuracy against cost, the parameters' importances, and the top
    trials side by side."""
    complete = [r for r in result.trials if r["state"] == "COMPLETE"]
    points = best_so_far(result.trials)
    weights = importances(result.trials, space.distributions())
    top = sorted(complete, key=lambda r: -r["accuracy"])[:8]
    keys = sorted({k for r in top for k in r["params"]})
    rows = "".join(
        "<tr>"
        + f"<td>{r['number']}{' (default)' if r['default'] else ''}</td>"
        + f"<td>{r['accuracy']:.4f}</td><td>{r['audit_minutes']:.1f}</td>"
        + "".join(f"<td>{html.escape(_fmt(r['params'].get(k)))}</td>" for k in keys)
        + "</tr>"
        for r in top
    )
    bars = "".join(
        f"<tr><td>{html.escape(k)}</td><td><div class=bar style='width:{v * 300:.0f}px'>"
        f"</div> {v:.2f}</td></tr>"
        for k, v in weights.items()
    )
    counts = {
        s: sum(r["state"] == s for r in result.trials) for s in ("COMPLETE", "PRUNED", "FAIL")
    }
    default = "" if result.default_accuracy is None else f"{result.default_accuracy:.4f}"
    return f"""<!doctype html><meta charset=utf-8><title>Despina search</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}
td,th{{padding:2px 8px;text-align:left}}.bar{{display:inline-block;height:10px;background:#36c}}
</style>
<h1>Model search</h1>
<p>{len(result.trials)} trials: {counts["COMPLETE"]} completed, {counts["PRUNED"]} pruned,
{counts["FAIL"]} failed. Chosen: accuracy <b>{result.best_accuracy:.4f}</b> on the held-out
20% (the default model: {default or "not run"}), within an estimated audit time of
{result.budget_minutes:.1f} min.</p>
<h2>Best accuracy so far</h2>{curve_svg(points, result.default_accuracy)}
<h2>Accuracy against cost</h2>
<p>Each completed trial; the Pareto front (no trial is better on every one of
{html.escape(", ".join(result.objectives))}) in blue, the chosen trial ringed.</p>
{_front_svg(complete, result)}
<h2>What mattered</h2><table>{bars or "<tr><td>too few completed trials</td></tr>"}</table>
<h2>Top trials</h2><table><tr><th>trial</th><th>accuracy</th><th>audit min</th>
{"".join(f"<th>{html.escape(k)}</th>" for k in keys)}</tr>{rows}</table>
"""


def _front_svg(rows: list[dict[str, Any]], result: StudyResult) -> str:
    """Accuracy against estimated audit minutes (or inference ms per image, when latency
    is an objective and cost is not)."""
    key, label = ("audit_minutes", "estimated audit minutes")
    if "latency" in result.objectives and "cost" not in result.objectives:
        key, label = ("infer_ms", "inference ms per image")
    pts = [(float(r[key] or 0), float(r["accuracy"]), r) for r in rows]
    if not pts:
        return "<p>no completed trial</p>"
    w, h, pad = 600, 260, 36
    x_lo, x_hi = min(p[0] for p in pts), max(p[0] for p in pts)
    y_lo, y_hi = min(p[1] for p in pts), max(p[1] for p in pts)
    x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 0.01

    def sx(x: float) -> float:
        return pad + (x - x_lo) / x_span * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad - (y - y_lo) / y_span * (h - 2 * pad)

    dots = "".join(
        f"<circle cx={sx(x):.1f} cy={sy(y):.1f} r=4 fill='{'#36c' if r.get('pareto') else '#bbb'}'>"
        f"<title>trial {r['number']}: {y:.4f}, {x:.3g}</title></circle>"
        + (
            f"<circle cx={sx(x):.1f} cy={sy(y):.1f} r=8 fill=none stroke='#c33'/>"
            if r["params"] == result.best_params and y == result.best_accuracy
            else ""
        )
        for x, y, r in pts
    )
    return (
        f"<svg width={w} height={h} role=img aria-label='accuracy against {label}'>{dots}"
        f"<text x={w / 2} y={h - 6} font-size=11 text-anchor=middle>{label} "
        f"({x_lo:.3g} to {x_hi:.3g})</text><text x=2 y=14 font-size=11>accuracy "
        f"{y_lo:.3f} to {y_hi:.3f}</text></svg>"
    )


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def curve_svg(points: list[tuple[int, float]], default: float | None) -> str:
    if not points:
        return "<p>no completed trial</p>"
    w, h, pad = 600, 240, 30
    xs = [p[0] for p in points]
    ys = [p[1] for p in points] + ([default] if default is not None else [])
    lo, hi = min(ys) - 0.01, max(ys) + 0.01
    span_x = max(1, max(xs) - min(xs))

    def sx(x: float) -> float:
        return pad + (x - min(xs)) / span_x * (w - 2 * pad)

    def sy(y: float) -> float:
        return h - pad - (y - lo) / (hi - lo) * (h - 2 * pad)

    path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    line = ""
    if default is not None:
        line = (
            f"<line x1={pad} x2={w - pad} y1={sy(default):.1f} y2={sy(default):.1f} "
            f"stroke='#c33' stroke-dasharray='4 3'/><text x={w - pad} y={sy(default) - 4:.1f} "
            f"text-anchor=end font-size=11 fill='#c33'>default {default:.3f}</text>"
        )
    return (
        f"<svg width={w} height={h} role=img aria-label='best accuracy by trial'>"
        f"<polyline fill=none stroke='#36c' stroke-width=2 points='{path}'/>{line}"
        f"<text x={pad} y={h - 8} font-size=11>trial {min(xs)}</text>"
        f"<text x={w - pad} y={h - 8} font-size=11 text-anchor=end>trial {max(xs)}</text>"
        f"<text x=2 y={sy(hi - 0.01):.1f} font-size=11>{hi - 0.01:.3f}</text>"
        f"<text x=2 y={sy(lo + 0.01):.1f} font-size=11>{lo + 0.01:.3f}</text></svg>"
    )

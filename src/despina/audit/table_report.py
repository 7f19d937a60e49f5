"""The table and sequence audits' page: counts, the schema, and the worst rows of each kind
of finding with their own cells, or each flagged series drawn as a line."""

from __future__ import annotations

from collections import Counter
from importlib.resources import files
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from despina.audit.report import ISSUE_FILES, confusion_svg


def sparkline(values: np.ndarray, width: int = 160, height: int = 32) -> Markup:
    """A series as a small inline SVG line (one per channel), for reports."""
    lines = []
    for k, v in enumerate(np.atleast_2d(values)):
        v = np.asarray(v, np.float64)[:: max(1, len(v) // 800)]  # at most ~800 points
        finite = np.isfinite(v)
        if finite.sum() < 2:
            continue
        lo, hi = float(v[finite].min()), float(v[finite].max())
        span = hi - lo or 1.0
        xs = np.linspace(1, width - 1, len(v))
        ys = height - 2 - (np.where(finite, v, lo) - lo) / span * (height - 4)
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys, strict=True))
        colour = ("#2c3e50", "#c0392b", "#27ae60", "#8e44ad")[k % 4]
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1" points="{points}"/>'
        )
    return Markup(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f"{''.join(lines)}</svg>"
    )


def _cells(
    rows: pd.DataFrame, columns: list[str], limit: int, pictures: dict[str, Markup] | None = None
) -> dict[str, Any]:
    shown = rows.head(limit)
    cells = [
        [("" if pd.isna(v) else str(v)) for v in r] for r in shown[columns].itertuples(index=False)
    ]
    if pictures is not None:
        columns = ["shape", *columns]
        cells = [[pictures.get(str(i), ""), *r] for i, r in zip(shown["id"], cells, strict=True)]
    return {"total": len(rows), "columns": columns, "rows": cells}


def render_table_html(
    df: pd.DataFrame,
    summary: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    per_issue: int = 25,
    series: dict[str, np.ndarray] | None = None,
) -> str:
    """The table (or sequence) audit's page: counts, the schema, the bounds, and the worst
    rows of each kind of finding with their own cells, or each series drawn (the full
    lists are in issues/*.csv)."""
    schema = summary.get("schema") or {"columns": []}
    own = [c["name"] for c in schema["columns"]]
    own = [c if c in df.columns else f"column:{c}" for c in own]
    pictures = None
    if series is not None:
        flagged = set().union(*(set(t["id"].astype(str).head(per_issue)) for t in tables.values()))
        pictures = {i: sparkline(series[i]) for i in flagged if i in series}
    lead = ["id", "given_label", "suggested_label"] if summary.get("target") else ["id"]
    pairs = Counter(
        f"{g} → {s}"
        for g, s, f in zip(
            df["given_label"], df["suggested_label"], df["is_label_issue"], strict=True
        )
        if f and s != ""
    )
    spec = [
        (
            "label",
            "Label issues",
            "Relabel or drop: a model trained on the other rows disagrees with the given label.",
            [*lead, "label_quality"],
        ),
        (
            "defect",
            "Bad values",
            "Fix at the source: missing, mistyped and out-of-range cells, rare categories.",
            ["id", "value_findings"],
        ),
        (
            "duplicate",
            "Duplicate rows",
            "Keep one row of each set (cleaned.csv keeps the "
            "first); the rows of a conflicting set disagree on the label.",
            ["id", "duplicate_group", "duplicate_kind", "is_duplicate"],
        ),
        (
            "outlier",
            "Outliers",
            "Look at each: drop rows that do not belong, keep rare but "
            "valid ones. Lower score = stranger.",
            ["id", "outlier_score"],
        ),
    ]
    sections = [
        {
            "title": t,
            "todo": todo,
            "csv": ISSUE_FILES[k],
            **_cells(tables[k], [*cols, *own], per_issue, pictures),
        }
        for k, t, todo, cols in spec
    ]
    template = jinja2.Template(
        files("despina.audit").joinpath("templates/table_report.html").read_text(),
        autoescape=True,
    )
    return template.render(
        summary=summary,
        sections=sections,
        confusion_svg=confusion_svg(pairs.most_common(12)),
    )

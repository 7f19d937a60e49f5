"""Turn check results into samples.csv, summary.json, report.html and cleaned.csv."""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import cv2
import jinja2
import numpy as np
import pandas as pd

from despina.audit.base import AuditContext
from despina.audit.runner import CheckOutcome
from despina.data.decode import decode_image
from despina.data.images import ImageRecord

SAMPLE_COLUMNS = (
    "id",
    "path",
    "given_label",
    "predicted_label",
    "label_quality",
    "is_label_issue",
    "suggested_label",
    "outlier_score",
    "is_outlier",
    "duplicate_group",
    "is_duplicate",
    "defects",
)


@dataclass
class AuditReport:
    """What an audit found: one row per sample, a summary, and where the files are."""

    out: Path
    samples: pd.DataFrame
    summary: dict[str, Any]
    outcomes: dict[str, CheckOutcome] = field(repr=False)
    #: Out-of-fold CNN class probabilities and embeddings of the readable samples (rows of
    #: ``samples`` whose ``defects`` has no load defect), for use with other tools.
    pred_probs: np.ndarray | None = field(default=None, repr=False)
    embeddings: np.ndarray | None = field(default=None, repr=False)
    #: Out-of-fold probabilities of each cross-validation round (the last is ``pred_probs``).
    round_pred_probs: list[np.ndarray] = field(default_factory=list, repr=False)

    @property
    def report_html(self) -> Path:
        return self.out / "report.html"

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.summary["counts"])

    @property
    def health(self) -> float:
        return float(self.summary["health_score"])


def _result(outcomes: dict[str, CheckOutcome], name: str) -> Any:
    o = outcomes.get(name)
    return o.result if o is not None and o.status == "ok" else None


def build_samples(
    ctx: AuditContext, paths: Sequence[str], outcomes: dict[str, CheckOutcome]
) -> pd.DataFrame:
    """One row per sample, the fixed columns first, then per-check scores."""
    n, names = ctx.n, ctx.class_names
    blank: list[Any] = [""] * n
    df = pd.DataFrame({"id": ctx.ids, "path": list(paths), "given_label": ctx.given_labels})
    if ctx.pred_probs is not None:
        df["predicted_label"] = ctx.expand(ctx.pred_probs.argmax(axis=1), -1)
        df["predicted_label"] = [names[i] if i >= 0 else "" for i in df["predicted_label"]]
    else:
        df["predicted_label"] = blank
    label, outlier = _result(outcomes, "label"), _result(outcomes, "outlier")
    dup, defect = _result(outcomes, "duplicate"), _result(outcomes, "defect")
    valid = ctx.valid
    if label is not None:
        df["label_quality"] = np.where(valid, np.round(label.scores, 4), np.nan)
        df["is_label_issue"] = label.flags
        sug = label.details["suggested"]
        df["suggested_label"] = [
            names[s] if f and s >= 0 else "" for s, f in zip(sug, label.flags, strict=True)
        ]
    else:
        df["label_quality"], df["is_label_issue"], df["suggested_label"] = np.nan, False, blank
    if outlier is not None:
        df["outlier_score"] = np.where(valid, np.round(outlier.scores, 4), np.nan)
        df["is_outlier"] = outlier.flags
    else:
        df["outlier_score"], df["is_outlier"] = np.nan, False
    if dup is not None:
        df["duplicate_group"] = pd.array(
            [g if g >= 0 else None for g in dup.details["group_of"]], dtype="Int64"
        )
        df["is_duplicate"] = dup.flags
    else:
        df["duplicate_group"] = pd.array([None] * n, dtype="Int64")
        df["is_duplicate"] = False
    if defect is not None:
        df["defects"] = [";".join(d) for d in defect.details["defects"]]
    else:
        df["defects"] = [d or "" for d in ctx.load_defects]
    for name, o in outcomes.items():
        if o.result is not None and name not in ("label", "outlier"):
            df[f"{name}_score"] = np.round(o.result.scores, 4)
    return df[list(SAMPLE_COLUMNS) + [c for c in df.columns if c not in SAMPLE_COLUMNS]]


def counts_of(df: pd.DataFrame) -> dict[str, int]:
    defects = Counter(d for row in df["defects"] for d in row.split(";") if d)
    return {
        "samples": len(df),
        "label_issues": int(df["is_label_issue"].sum()),
        "outliers": int(df["is_outlier"].sum()),
        "duplicates": int(df["is_duplicate"].sum()),
        "duplicate_groups": int(df["duplicate_group"].nunique()),
        "defective": int((df["defects"] != "").sum()),
        **{f"defect_{k}": v for k, v in sorted(defects.items())},
    }


def health_score(df: pd.DataFrame) -> float:
    """Share of samples with no finding (label, outlier, duplicate or defect)."""
    bad = df["is_label_issue"] | df["is_outlier"] | df["is_duplicate"] | (df["defects"] != "")
    return float(1.0 - bad.mean()) if len(df) else 1.0


def cleaned_manifest(df: pd.DataFrame, drop_label_issues: bool) -> pd.DataFrame:
    """Defective and duplicate rows removed; label issues relabeled (or dropped)."""
    keep = (df["defects"] == "") & ~df["is_duplicate"]
    if drop_label_issues:
        keep &= ~df["is_label_issue"]
    out = df.loc[keep, ["path", "given_label", "suggested_label", "is_label_issue", "id"]]
    label = np.where(
        out["is_label_issue"] & (out["suggested_label"] != ""),
        out["suggested_label"],
        out["given_label"],
    )
    return pd.DataFrame({"path": out["path"], "label": label, "id": out["id"]})


def _thumb_uri(record: ImageRecord, size: int = 96) -> str:
    dec = decode_image(record, max_pixels=64_000_000)
    if dec.image is None:
        return ""
    img = dec.image
    h, w = img.shape[:2]
    s = size / max(h, w)
    interp = cv2.INTER_NEAREST if s >= 2 else cv2.INTER_AREA
    img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def _confusion_svg(pairs: list[tuple[str, int]]) -> str:
    """A horizontal bar chart of the most frequent given → suggested label pairs."""
    if not pairs:
        return ""
    top = max(c for _, c in pairs)
    bar_h, label_w, width = 22, 170, 560
    rows = []
    for i, (name, c) in enumerate(pairs):
        y = i * bar_h
        w = max(2, int((width - label_w - 40) * c / top))
        rows.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{html.escape(name)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{bar_h - 6}" fill="#c0392b"/>'
            f'<text x="{label_w + w + 6}" y="{y + 15}">{c}</text>'
        )
    h = bar_h * len(pairs)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" '
        f'font-family="sans-serif" font-size="13">{"".join(rows)}</svg>'
    )


def render_html(
    df: pd.DataFrame,
    summary: dict[str, Any],
    records: Sequence[ImageRecord],
    outcomes: dict[str, CheckOutcome],
    per_issue: int = 12,
) -> str:
    """One self-contained HTML page: counts, worst samples per issue, duplicate sets, confusions."""
    pos = {rid: i for i, rid in enumerate(df["id"])}

    def card(row: pd.Series, score: float | None, note: str = "") -> dict[str, Any]:
        return {
            "uri": _thumb_uri(records[pos[row["id"]]]),
            "id": row["id"],
            "given": row["given_label"],
            "suggested": row["suggested_label"],
            "score": "" if score is None or pd.isna(score) else f"{score:.3f}",
            "note": note,
        }

    sections = []
    lab = df[df["is_label_issue"]].sort_values("label_quality").head(per_issue)
    sections.append(
        (
            "Label issues",
            "given label → suggested label; lower quality = likelier wrong",
            [card(r, r["label_quality"]) for _, r in lab.iterrows()],
        )
    )
    out = df[df["is_outlier"]].sort_values("outlier_score").head(per_issue)
    sections.append(
        (
            "Outliers",
            "unlike the rest: far from same-label neighbours and uncertain to the model",
            [card(r, r["outlier_score"]) for _, r in out.iterrows()],
        )
    )
    dfct = df[df["defects"] != ""]
    if "defect_score" in dfct:
        dfct = dfct.sort_values("defect_score")
    sections.append(
        (
            "Defective images",
            "corrupt, blurry, dark, overexposed, blank, odd size...",
            [
                card(r, r.get("defect_score"), r["defects"])
                for _, r in dfct.head(per_issue * 2).iterrows()
            ],
        )
    )
    groups = []
    for _, g in df[df["duplicate_group"].notna()].groupby("duplicate_group"):
        groups.append(
            [
                card(r, None, "copy" if r["is_duplicate"] else "kept")
                for _, r in g.head(6).iterrows()
            ]
        )
        if len(groups) >= 10:
            break
    conf = Counter(
        f"{a} → {b}"
        for a, b in zip(
            df.loc[df["is_label_issue"], "given_label"],
            df.loc[df["is_label_issue"], "suggested_label"],
            strict=True,
        )
    )
    template = jinja2.Template(
        files("despina.audit").joinpath("templates/report.html").read_text(),
        autoescape=True,
    )
    return template.render(
        summary=summary,
        sections=sections,
        groups=groups,
        confusion_svg=_confusion_svg(conf.most_common(12)),
        outcomes=list(outcomes.values()),
    )


def write_outputs(
    out: Path,
    df: pd.DataFrame,
    summary: dict[str, Any],
    records: Sequence[ImageRecord],
    outcomes: dict[str, CheckOutcome],
    drop_label_issues: bool,
) -> None:
    """Write samples.csv, summary.json, report.html and cleaned.csv into ``out``."""
    df.to_csv(out / "samples.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default))
    cleaned_manifest(df, drop_label_issues).to_csv(out / "cleaned.csv", index=False)
    (out / "report.html").write_text(render_html(df, summary, records, outcomes))


def _json_default(o: object) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialize {type(o).__name__}")

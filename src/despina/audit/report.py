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


def significant(scores: np.ndarray, digits: int = 4) -> np.ndarray:
    """Scores to ``digits`` significant digits: small ones keep what ranks them (0.00012
    and 0.00031 stay apart where four decimals would make both 0.0001 or 0.0003)."""
    x = np.asarray(scores, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(x > 0, 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(x)))), 1.0)
    return np.where(x > 0, np.round(x * scale) / scale, x)


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
    dup = _result(outcomes, "duplicate")
    # Defective samples: images that are dark, blurred...; table rows with bad values.
    defect = _result(outcomes, "defect") or _result(outcomes, "values")
    valid = ctx.valid
    if label is not None:
        df["label_quality"] = np.where(valid, significant(label.scores), np.nan)
        df["is_label_issue"] = label.flags
        sug = label.details["suggested"]
        df["suggested_label"] = [
            names[s] if f and s >= 0 else "" for s, f in zip(sug, label.flags, strict=True)
        ]
    else:
        df["label_quality"], df["is_label_issue"], df["suggested_label"] = np.nan, False, blank
    if outlier is not None:
        df["outlier_score"] = np.where(valid, significant(outlier.scores), np.nan)
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
        if o.result is not None and name not in ("label", "outlier", "values"):
            df[f"{name}_score"] = np.round(o.result.scores, 4)
    return df[list(SAMPLE_COLUMNS) + [c for c in df.columns if c not in SAMPLE_COLUMNS]]


LABEL_COLUMNS = ("given_label", "predicted_label", "suggested_label")


def typed_labels(df: pd.DataFrame) -> pd.DataFrame:
    """The label columns as integers (nullable) when every class name is an integer, else
    as strings, missing values as <NA> either way: never a float such as 3.0."""
    out = df.copy()
    values = [v for c in LABEL_COLUMNS for v in out[c] if v != "" and not pd.isna(v)]
    numeric = all(str(v).lstrip("-").isdigit() for v in values)
    for c in LABEL_COLUMNS:
        column = out[c].astype(object).where(out[c].astype(str) != "", None)
        values = [None if v is None else int(v) if numeric else str(v) for v in column]
        out[c] = pd.Series(values, index=out.index, dtype="Int64" if numeric else "string")
    return out


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


def confusions(df: pd.DataFrame, top: int = 12) -> list[tuple[str, int]]:
    """The ``top`` most frequent given → suggested label pairs of the label issues."""
    lab = df[df["is_label_issue"].astype(bool)]
    pairs = Counter(
        f"{a} → {b}"
        for a, b in zip(lab["given_label"], lab["suggested_label"], strict=True)
        if not pd.isna(b) and b != ""
    )
    return pairs.most_common(top)


def confusion_svg(pairs: list[tuple[str, int]]) -> str:
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


#: Per-issue lists written beside the report, worst first: (file, what it lists).
ISSUE_FILES = {
    "label": "issues/label_issues.csv",
    "outlier": "issues/outliers.csv",
    "defect": "issues/defects.csv",
    "duplicate": "issues/duplicates.csv",
}


def issue_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every flagged row of each kind, ordered by the score that ranks it, worst first."""
    defective = df[df["defects"] != ""]
    if "defect_score" in defective:
        defective = defective.sort_values("defect_score", kind="stable")
    dups = df[df["duplicate_group"].notna()].sort_values(["duplicate_group", "is_duplicate"])
    return {
        "label": df[df["is_label_issue"]].sort_values("label_quality", kind="stable"),
        "outlier": df[df["is_outlier"]].sort_values("outlier_score", kind="stable"),
        "defect": defective,
        "duplicate": dups,
    }


def score_text(score: float | None) -> str:
    """A score as a card shows it: enough digits to tell the worst ones apart."""
    if score is None or pd.isna(score):
        return ""
    return f"{score:.3f}" if score >= 0.01 or score == 0 else f"{score:.1e}"


def render_html(
    df: pd.DataFrame,
    summary: dict[str, Any],
    records: Sequence[ImageRecord],
    outcomes: dict[str, CheckOutcome],
    per_issue: int = 12,
    tables: dict[str, pd.DataFrame] | None = None,
) -> str:
    """One self-contained HTML page: counts, the worst samples of each kind of finding
    (each gallery says how many of how many it shows and links the full list), duplicate
    sets, the most frequent confusions, and what to do with each."""
    pos = {rid: i for i, rid in enumerate(df["id"])}

    def card(row: pd.Series, score: float | None, note: str = "") -> dict[str, Any]:
        return {
            "uri": _thumb_uri(records[pos[row["id"]]]),
            "id": row["id"],
            "given": row["given_label"],
            "suggested": "" if pd.isna(row["suggested_label"]) else row["suggested_label"],
            "score": score_text(score),
            "note": note,
        }

    def gallery(title: str, todo: str, rows: pd.DataFrame, total: int, key: str,
                score: str | None, note: str = "") -> dict[str, Any]:  # fmt: skip
        shown = rows.head(per_issue)
        return {
            "title": title,
            "todo": todo,
            "note": note,
            "total": total,
            "csv": ISSUE_FILES[key],
            "cards": [
                card(r, r[score] if score else None, r["defects"] if key == "defect" else "")
                for _, r in shown.iterrows()
            ],
        }

    tables = tables if tables is not None else issue_tables(df)
    sections = []
    lab = tables["label"]
    sections.append(
        gallery(
            "Label issues",
            "Relabel each to the suggested label (cleaned.csv already does) or drop them with "
            "--drop-label-issues; lower label quality = likelier wrong.",
            lab,
            len(lab),
            "label",
            "label_quality",
        )
    )
    out = tables["outlier"]
    plain = out[out["defects"] == ""]
    also = len(out) - len(plain)
    sections.append(
        gallery(
            "Outliers",
            "Look at each: drop what does not belong to the dataset (another kind of object, "
            "a screenshot, a test card); keep rare but valid cases. Lower score = stranger.",
            plain,
            len(out),
            "outlier",
            "outlier_score",
            f"{also} more are defective images too (dark, blurry...): see the galleries below."
            if also
            else "",
        )
    )
    dfct = tables["defect"]
    kinds = Counter(d for row in dfct["defects"] for d in row.split(";") if d)
    for kind, total in kinds.most_common():
        rows = dfct[dfct["defects"].str.split(";").map(lambda ds, k=kind: k in ds)]
        sections.append(
            gallery(
                f"Defective images: {kind.replace('_', ' ')}",
                DEFECT_TODO.get(kind, "Check how these images were captured or stored."),
                rows,
                total,
                "defect",
                "defect_score" if "defect_score" in rows else None,
            )
        )
    dup_sets = list(tables["duplicate"].groupby("duplicate_group", sort=False))
    groups = [
        [card(r, None, "copy" if r["is_duplicate"] else "kept") for _, r in g.head(6).iterrows()]
        for _, g in dup_sets[:per_issue]
    ]
    template = jinja2.Template(
        files("despina.audit").joinpath("templates/report.html").read_text(),
        autoescape=True,
    )
    return template.render(
        summary=summary,
        sections=sections,
        groups=groups,
        group_total=len(dup_sets),
        duplicates_csv=ISSUE_FILES["duplicate"],
        confusion_svg=confusion_svg(confusions(df)),
        outcomes=list(outcomes.values()),
    )


#: What to do with each kind of defect, in one line.
DEFECT_TODO = {
    "corrupt": "Re-export or re-download these files; they cannot be decoded and were left out.",
    "missing": "Fix the manifest's paths or restore the files; they were left out.",
    "oversized": "Downscale these images before the audit; they were left out unread.",
    "blurry": "Check the camera's focus and motion; drop the images that lost their detail.",
    "dark": "Check the exposure or the lighting; drop or re-shoot the images too dark to use.",
    "overexposed": "Check the exposure; blown highlights have lost what was there.",
    "low_information": "Drop blank and near-blank images (empty frames, lens caps, test cards).",
    "grayscale": "Check the source: grayscale images among colour ones come from elsewhere.",
    "odd_size": "Check the crop or the export: this size is unlike the rest.",
    "odd_aspect_ratio": "Check the crop or the export: this aspect ratio is unlike the rest.",
}


def write_outputs(
    out: Path,
    df: pd.DataFrame,
    summary: dict[str, Any],
    records: Sequence[ImageRecord],
    outcomes: dict[str, CheckOutcome],
    drop_label_issues: bool,
) -> pd.DataFrame:
    """Write samples.csv, summary.json, report.html, cleaned.csv and the per-issue lists
    (issues/*.csv, worst first) into ``out``; the samples as written (typed labels)."""
    samples = typed_labels(df)
    samples.to_csv(out / "samples.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=json_default))
    cleaned_manifest(df, drop_label_issues).to_csv(out / "cleaned.csv", index=False)
    (out / "issues").mkdir(exist_ok=True)
    tables = issue_tables(df)
    for key, table in tables.items():
        table.to_csv(out / ISSUE_FILES[key], index=False)
    (out / "report.html").write_text(render_html(df, summary, records, outcomes, tables=tables))
    return samples


def json_default(o: object) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialize {type(o).__name__}")

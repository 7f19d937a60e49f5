"""``make demo``: digits exported to an image folder, known problems injected, audited, scored."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from despina.audit.report import AuditReport
from despina.core.config import AuditConfig
from despina.core.progress import ProgressReporter
from despina.data.inject import GroundTruth, export_digits, inject_problems
from despina.jobs.audit import audit


@dataclass(frozen=True)
class Score:
    """Found versus injected for one problem type."""

    problem: str
    injected: int
    flagged: int
    true_positives: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.injected if self.injected else 1.0


def score_against(df: pd.DataFrame, gt: GroundTruth) -> list[Score]:
    """Precision and recall of each injected problem type in an audit's samples table."""

    def has(defect: str) -> pd.Series:
        return df["defects"].str.split(";").apply(lambda d: defect in d)

    def score(problem: str, truth: set[str], flagged: pd.Series) -> Score:
        ids = set(df.loc[flagged, "id"])
        return Score(problem, len(truth), len(ids), len(ids & truth))

    rows = [
        score("label flip", set(gt.label_flips), df["is_label_issue"]),
        score("blurred", set(gt.blurred), has("blurry")),
        score("darkened", set(gt.darkened), has("dark")),
        score("corrupt file", set(gt.corrupt), has("corrupt")),
    ]
    # A near-duplicate is found when the original and its copy share a duplicate set;
    # a flagged row is right when its set holds an injected pair.
    group = dict(zip(df["id"], df["duplicate_group"], strict=True))
    found = sum(pd.notna(group[a]) and group[a] == group[b] for a, b in gt.near_duplicates)
    injected_groups = {group[a] for a, b in gt.near_duplicates if pd.notna(group[a])}
    flagged = df[df["is_duplicate"]]
    right = int(flagged["duplicate_group"].isin(injected_groups).sum())
    rows.append(
        Score("near-duplicate", len(gt.near_duplicates), len(flagged), int(min(found, right)))
    )
    return rows


def run_demo(
    out: Path, seed: int = 0, workers: int | None = None, progress: ProgressReporter | None = None
) -> tuple[AuditReport, list[Score]]:
    """Build the demo dataset under ``out/data`` and audit it into ``out/audit``."""
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    export_digits(data, size=16)
    gt = inject_problems(data, seed=seed)
    report = audit(data, out / "audit", AuditConfig(seed=seed, workers=workers), progress=progress)
    return report, score_against(report.samples, gt)

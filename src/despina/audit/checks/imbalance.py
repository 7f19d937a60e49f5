"""Class imbalance: a dataset-level view of how evenly the classes are represented.

The dataset score is the normalized Shannon entropy of the class distribution (1 = even);
rows of classes smaller than ``min_ratio`` times the median class are flagged.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult


class ImbalanceCheck(Check):
    name: ClassVar[str] = "imbalance"
    description: ClassVar[str] = "classes much smaller than the typical class"
    modalities: ClassVar[frozenset[str]] = frozenset({"image", "table", "sequence"})
    requires: ClassVar[frozenset[str]] = frozenset({"labels"})

    def __init__(self, min_ratio: float = 0.2) -> None:
        self.min_ratio = min_ratio

    def run(self, ctx: AuditContext) -> CheckResult:
        assert ctx.labels is not None  # ensured by requires
        if len(ctx.valid_idx) == 0:
            return self.empty(ctx)
        k = len(ctx.class_names)
        counts = np.bincount(ctx.labels, minlength=k).astype(np.float64)
        present = counts[counts > 0]
        if len(present) <= 1:
            entropy_score = 1.0 if len(present) == 1 and k == 1 else 0.0
        else:
            p = present / present.sum()
            entropy_score = float(-(p * np.log(p)).sum() / np.log(len(present)))
        median = float(np.median(present)) if len(present) else 0.0
        ratio = counts / median if median else np.ones(k)
        row_ratio = np.clip(ratio[ctx.labels], 0.0, 1.0)
        flags = row_ratio < self.min_ratio
        return CheckResult(
            name=self.name,
            scores=ctx.expand(row_ratio, 1.0),
            flags=ctx.expand(flags, False),
            score=float(np.clip(entropy_score, 0.0, 1.0)),
            details={
                "counts": {c: int(n) for c, n in zip(ctx.class_names, counts, strict=True)},
                "minority_classes": [
                    c for c, r in zip(ctx.class_names, ratio, strict=True) if r < self.min_ratio
                ],
            },
        )

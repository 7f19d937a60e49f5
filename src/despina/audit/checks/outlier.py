"""Outliers: samples unlike the rest, by embedding distance and model uncertainty.

The distance is a k-nearest-neighbour score (Ramaswamy et al., SIGMOD 2000) taken out of
fold: each sample against the training samples of the fold model that did not see it.
It is measured to the nearest neighbours *sharing the sample's label*, so a tight cluster
of foreign images (a whole unknown class mixed in) cannot hide behind its own members, and
it is combined with the model's uncertainty (1 - max probability, Hendrycks & Gimpel,
ICLR 2017), which keeps confidently recognized but mislabeled samples out of this check.
Both are calibrated as robust z-scores against the dataset's own distribution.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult, robust_z, sigmoid


class OutlierCheck(Check):
    name: ClassVar[str] = "outlier"
    description: ClassVar[str] = "samples unlike the rest of the dataset"
    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})

    def __init__(self, k: int = 5, threshold: float = 3.5) -> None:
        self.k = k
        self.threshold = threshold

    def run(self, ctx: AuditContext) -> CheckResult:
        if len(ctx.valid_idx) == 0:
            return self.empty(ctx)
        sims, idx = ctx.neighbors
        if sims.shape[1] == 0:
            return self.empty(ctx)
        dist = 1.0 - sims
        if ctx.labels is not None:
            # Neighbours with another label count as the farthest neighbour seen.
            same = ctx.labels[idx] == ctx.labels[:, None]
            dist = np.sort(np.where(same, dist, dist[:, -1:]), axis=1)
        d = np.maximum(dist[:, : self.k].mean(axis=1), 1e-6)
        z = robust_z(np.log(d), floor=0.05)
        if ctx.pred_probs is not None and len(ctx.pred_probs) == len(z):
            uncertainty = 1.0 - ctx.pred_probs.max(axis=1)
            z = (z + robust_z(np.log(uncertainty + 1e-4), floor=0.1)) / np.sqrt(2.0)
        flags = z > self.threshold
        scores = sigmoid(self.threshold - z)
        return CheckResult(
            name=self.name,
            scores=ctx.expand(scores, 1.0),
            flags=ctx.expand(flags, False),
            score=float(1.0 - flags.mean()),
            details={"z": ctx.expand(z, 0.0), "distance": ctx.expand(d, 0.0)},
        )

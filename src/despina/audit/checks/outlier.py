"""Outliers: samples far from their nearest neighbours in the CNN's embedding space.

A k-nearest-neighbour distance score (Ramaswamy et al., SIGMOD 2000), with distances taken
out of fold (each sample against the training samples of the fold model that did not see
it) and calibrated against the dataset's own distribution with a robust z-score.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult, robust_z, sigmoid


class OutlierCheck(Check):
    name: ClassVar[str] = "outlier"
    description: ClassVar[str] = "samples unlike the rest of the dataset"
    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})

    def __init__(self, k: int = 10, threshold: float = 4.0) -> None:
        self.k = k
        self.threshold = threshold

    def run(self, ctx: AuditContext) -> CheckResult:
        if len(ctx.valid_idx) == 0:
            return self.empty(ctx)
        sims, _ = ctx.neighbors
        if sims.shape[1] == 0:
            scores = np.ones(ctx.n)
            return CheckResult(self.name, scores, np.zeros(ctx.n, bool), 1.0, {"z": scores * 0})
        dist = 1.0 - sims[:, : self.k].mean(axis=1)
        z = robust_z(np.log(np.maximum(dist, 1e-6)), floor=0.05)
        flags = z > self.threshold
        scores = sigmoid(self.threshold - z)
        return CheckResult(
            name=self.name,
            scores=ctx.expand(scores, 1.0),
            flags=ctx.expand(flags, False),
            score=float(1.0 - flags.mean()),
            details={"z": ctx.expand(z, 0.0), "distance": ctx.expand(dist, 0.0)},
        )

"""Label issues: confident learning (cleanlab) on out-of-fold CNN and neighbour probabilities.

Reference: Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", JAIR 2021. Despina averages the CNN's out-of-fold probabilities with a
similarity-weighted vote of each sample's out-of-fold neighbours, which makes the
probabilities better calibrated for rare confusions than the CNN alone.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult


def neighbor_probs(
    sims: np.ndarray, idx: np.ndarray, labels: np.ndarray, num_classes: int, k: int = 10
) -> np.ndarray:
    """Class distribution of each sample's ``k`` nearest neighbours, weighted by similarity."""
    sims, idx = sims[:, :k], idx[:, :k]
    w = np.exp((sims - 1.0) * 10.0)  # closer neighbours count more
    votes = np.zeros((len(sims), num_classes))
    np.add.at(
        votes, (np.repeat(np.arange(len(sims)), sims.shape[1]), labels[idx].ravel()), w.ravel()
    )
    votes += 1e-3  # every class keeps a little mass
    return votes / votes.sum(axis=1, keepdims=True)


class LabelCheck(Check):
    name: ClassVar[str] = "label"
    description: ClassVar[str] = "samples whose given label disagrees with the evidence"
    modalities: ClassVar[frozenset[str]] = frozenset({"image", "table", "sequence"})
    requires: ClassVar[frozenset[str]] = frozenset({"labels", "pred_probs"})

    def __init__(
        self, neighbor_weight: float = 0.5, filter_by: str = "prune_by_noise_rate"
    ) -> None:
        self.neighbor_weight = neighbor_weight
        self.filter_by = filter_by

    def run(self, ctx: AuditContext) -> CheckResult:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

        assert ctx.labels is not None
        assert ctx.pred_probs is not None
        if len(ctx.valid_idx) == 0:
            return self.empty(ctx)
        labels, probs = ctx.labels, ctx.pred_probs.astype(np.float64)
        k = probs.shape[1]
        if ctx.embeddings is not None or ctx.oof_neighbors is not None:
            sims, idx = ctx.neighbors
            if sims.shape[1] > 0:
                nb = neighbor_probs(sims, idx, labels, k)
                probs = (1 - self.neighbor_weight) * probs + self.neighbor_weight * nb
        probs = probs / probs.sum(axis=1, keepdims=True)
        present = np.unique(labels)
        if len(present) < 2:
            flags = np.zeros(len(labels), bool)
            quality = np.ones(len(labels))
        else:
            # One process: cleanlab's default forks a pool, and a fork inside a worker
            # that runs threads (a Ray worker's) can hang; the per-class loop is cheap.
            flags = find_label_issues(labels, probs, filter_by=self.filter_by, n_jobs=1)
            quality = get_label_quality_scores(labels, probs, method="self_confidence")
        quality = np.clip(quality, 0.0, 1.0)
        suggested = probs.argmax(axis=1)
        return CheckResult(
            name=self.name,
            scores=ctx.expand(quality.astype(np.float64), 1.0),
            flags=ctx.expand(flags.astype(bool), False),
            score=float(1.0 - flags.mean()) if len(flags) else 1.0,
            details={
                "suggested": ctx.expand(suggested.astype(np.int64), -1),
                "predicted": ctx.expand(probs.argmax(axis=1).astype(np.int64), -1),
                "probs": probs,
            },
        )

"""Cross-validation rounds shared by the table and sequence audits: each later round trains
without the rows the label check flagged in the round before."""

from __future__ import annotations

import numpy as np

from despina.audit.base import AuditContext, Check
from despina.audit.checks import LabelCheck
from despina.core.config import AuditConfig, TrainConfig
from despina.core.progress import ProgressReporter
from despina.models.base import ModelBuilder
from despina.training.crossval import cross_validate


def needs_model(checks: list[Check]) -> bool:
    return any(c.requires & {"pred_probs", "embeddings"} for c in checks)


def cross_validated_rounds(
    ctx: AuditContext,
    x: np.ndarray,
    checks: list[Check],
    cfg: AuditConfig,
    train_cfg: TrainConfig,
    build: ModelBuilder,
    progress: ProgressReporter,
) -> list[np.ndarray]:
    """Fill ``ctx`` with out-of-fold probabilities, embeddings and neighbours of the valid
    rows ``x``; return each round's probabilities."""
    assert ctx.labels is not None
    label_checks = [c for c in checks if isinstance(c, LabelCheck)]
    rounds = cfg.label_rounds if label_checks else 1
    progress.start("cross-validation", cfg.folds * rounds)
    exclude: np.ndarray | None = None
    out: list[np.ndarray] = []
    for r in range(rounds):
        cv = cross_validate(
            x,
            ctx.labels,
            len(ctx.class_names),
            cfg.folds,
            cfg.model,
            train_cfg,
            cfg.seed + 1000 * r,
            cfg.worker_count,
            on_fold=lambda _: progress.advance("cross-validation"),
            exclude=exclude,
            class_names=ctx.class_names,
            build=build,
        )
        ctx.pred_probs, ctx.embeddings = cv.pred_probs, cv.embeddings
        out.append(cv.pred_probs)
        ctx.oof_neighbors = (cv.neighbor_sims, cv.neighbor_idx)
        ctx.oof_same_label = cv.same_label_dist
        ctx.oof_pred_label = cv.pred_label_dist
        if r + 1 < rounds:
            flags = label_checks[0].run(ctx).flags[ctx.valid]
            exclude = flags if flags.any() else None
    progress.finish("cross-validation")
    return out

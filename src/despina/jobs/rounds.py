"""What the image, table and sequence audits share: the timed stages, the checks' summary,
and the cross-validation rounds (each later round trains without the rows the label check
flagged in the round before)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from despina.audit.base import AuditContext, Check
from despina.audit.checks import LabelCheck
from despina.audit.report import ISSUE_FILES, issue_tables, json_default, typed_labels
from despina.audit.runner import CheckOutcome
from despina.audit.table_report import render_table_html
from despina.core.config import AuditConfig, TrainConfig
from despina.core.progress import ProgressReporter
from despina.models.base import ModelBuilder
from despina.models.frozen import is_saved_model
from despina.training.crossval import CrossValResult, cross_validate
from despina.training.trainer import Weights

#: Training defaults for models over feature vectors (table rows, a backbone's embeddings)
#: where the image defaults do not fit: no augmentation, more epochs (an epoch is a few
#: batches, and every one of them runs), and a batch of about a tenth of the rows within
#: these bounds.
VECTOR_TRAIN: dict[str, Any] = {"augment": False, "epochs": 40, "max_steps": None, "patience": 6}
VECTOR_BATCH = (16, 256)


class Stages:
    """Seconds per named stage of a job, in the order they ran."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - t0, 3)


def checks_summary(outcomes: dict[str, CheckOutcome]) -> dict[str, dict[str, Any]]:
    """Each check's status, reason and dataset score, as summary.json holds them."""
    return {
        k: {
            "status": o.status,
            "reason": o.reason,
            "dataset_score": None if o.result is None else round(o.result.score, 4),
        }
        for k, o in outcomes.items()
    }


def train_defaults(
    cfg: AuditConfig, rows: int, defaults: dict[str, Any], batch: tuple[int, int]
) -> TrainConfig:
    """``cfg.train`` with ``defaults`` for the fields the user left, and a batch of about a
    tenth of the ``rows`` within ``batch``: a small dataset still gets ten steps an epoch."""
    given = cfg.train.model_fields_set
    chosen = {**defaults, "batch_size": int(np.clip(rows // 10, *batch))}
    return cfg.train.model_copy(update={k: v for k, v in chosen.items() if k not in given})


def is_frozen(model_file: str | Path | None) -> bool:
    """An ONNX file or a TensorFlow SavedModel: a frozen model, used as it is (no folds, no
    final model)."""
    return model_file is not None and (
        str(model_file).lower().endswith(".onnx") or is_saved_model(model_file)
    )


def frozen_round(ctx: AuditContext, x: np.ndarray, model_file: str | Path) -> list[np.ndarray]:
    """Fill ``ctx`` with a frozen model's probabilities and embeddings of the valid rows."""
    from despina.models.frozen import frozen_outputs

    ctx.pred_probs, ctx.embeddings = frozen_outputs(model_file, x, len(ctx.class_names))
    return [ctx.pred_probs]


def finding_columns(df: pd.DataFrame, outcomes: dict[str, CheckOutcome]) -> pd.DataFrame:
    """``df`` with the table and sequence audits' own columns: each row's value findings
    (``missing:age;range:income``) and the kind of its duplicate set."""
    values, dup = outcomes.get("values"), outcomes.get("duplicate")
    df = df.drop(columns=["path"])
    ok = values is not None and values.result is not None
    found = values.result.details["findings"] if ok else [[]] * len(df)  # type: ignore[union-attr]
    df["value_findings"] = [";".join(f) for f in found]
    ok = dup is not None and dup.result is not None
    df["duplicate_kind"] = dup.result.details["kind"] if ok else ""  # type: ignore[union-attr]
    return df


def write_flat_outputs(
    out: Path,
    df: pd.DataFrame,
    summary: dict[str, Any],
    cleaned: pd.DataFrame,
    series: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """samples.csv, summary.json, cleaned.csv, issues/*.csv and report.html of a table or
    sequence audit; the samples as written (typed labels)."""
    samples = typed_labels(df)
    samples.to_csv(out / "samples.csv", index=False)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=json_default))
    cleaned.to_csv(out / "cleaned.csv", index=False)
    (out / "issues").mkdir(exist_ok=True)
    tables = issue_tables(df)
    for key, rows in tables.items():
        rows.to_csv(out / ISSUE_FILES[key], index=False)
    (out / "report.html").write_text(render_table_html(df, summary, tables, series=series))
    return samples


def round_share(cfg: AuditConfig, build: ModelBuilder | None, round_: int) -> float | None:
    """The share of its epochs a fold model of round ``round_`` (from 0) runs continuing the
    round before's model of its fold; None: a new model, every epoch. Only the built-in CNN
    (``build`` None) continues: other models are quick to train, or a user's own to define."""
    return cfg.round_share if round_ > 0 and build is None else None


def round_seed(cfg: AuditConfig, round_: int, build: ModelBuilder | None = None) -> int:
    """The seed of a round's fold split; its fold k trains with this seed + k. Rounds that
    continue the round before's models keep its split (each model's held-out rows)."""
    return cfg.seed + (0 if round_share(cfg, build, round_) is not None else 1000 * round_)


def use_round(ctx: AuditContext, cv: CrossValResult) -> None:
    """Give the checks one round's out-of-fold outputs."""
    ctx.pred_probs, ctx.embeddings = cv.pred_probs, cv.embeddings
    ctx.oof_neighbors = (cv.neighbor_sims, cv.neighbor_idx)
    ctx.oof_same_label = cv.same_label_dist
    ctx.oof_pred_label = cv.pred_label_dist


def label_exclusions(ctx: AuditContext, check: Check) -> np.ndarray | None:
    """The valid rows the label check flags on the round in ``ctx``: the next round trains
    without them (None when it flags none)."""
    flags = check.run(ctx).flags[ctx.valid]
    return flags if flags.any() else None


def model_rounds(checks: list[Check], cfg: AuditConfig) -> int:
    """How many rounds of folds an audit trains: none without a check that needs a model,
    ``label_rounds`` with a label check, else one."""
    if not needs_model(checks):
        return 0
    return cfg.label_rounds if any(isinstance(c, LabelCheck) for c in checks) else 1


def needs_model(checks: list[Check]) -> bool:
    return any(c.requires & {"pred_probs", "embeddings"} for c in checks)


def cross_validated_rounds(
    ctx: AuditContext,
    x: np.ndarray,
    checks: list[Check],
    cfg: AuditConfig,
    train_cfg: TrainConfig,
    build: ModelBuilder | None,
    progress: ProgressReporter,
) -> list[np.ndarray]:
    """Fill ``ctx`` with out-of-fold probabilities, embeddings and neighbours of the valid
    rows ``x``; return each round's probabilities. ``build``: None for the built-in CNN."""
    assert ctx.labels is not None
    label_checks = [c for c in checks if isinstance(c, LabelCheck)]
    rounds = model_rounds(checks, cfg)
    # One step per epoch; a fold that stops early (or ran in a worker process, which
    # reports only when done) advances by the epochs it did not report.
    shares = [round_share(cfg, build, r) for r in range(rounds)]
    epochs = [cfg.fold_epochs(len(x), train_cfg, share) for share in shares]
    progress.start("cross-validation", cfg.folds * sum(epochs))
    reported, round_ = [0], [0]

    def epoch_done(*_: float) -> None:
        reported[0] += 1
        progress.advance("cross-validation")

    def fold_done(_: int) -> None:
        progress.advance("cross-validation", max(0, epochs[round_[0]] - reported[0]))
        reported[0] = 0

    exclude: np.ndarray | None = None
    start: tuple[Weights, ...] = ()
    out: list[np.ndarray] = []
    for r, share in enumerate(shares):
        round_[0] = r
        cv = cross_validate(
            x,
            ctx.labels,
            len(ctx.class_names),
            cfg.folds,
            cfg.model,
            train_cfg,
            round_seed(cfg, r, build),
            cfg.worker_count,
            on_fold=fold_done,
            exclude=exclude,
            on_epoch=epoch_done,
            class_names=ctx.class_names,
            build=build,
            start=start if share is not None else (),
            epoch_share=share or 1.0,
        )
        use_round(ctx, cv)
        out.append(cv.pred_probs)
        start = cv.weights
        if r + 1 < rounds:
            exclude = label_exclusions(ctx, label_checks[0])
    progress.finish("cross-validation")
    return out

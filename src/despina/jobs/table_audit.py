"""The table audit: read → infer the schema → value checks → cross-validate an MLP → checks
→ report → final model. The outputs have the image audit's shape; ``samples.csv`` holds the
table's own columns beside the findings."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from despina.audit.base import AuditContext, Check
from despina.audit.checks import default_registry
from despina.audit.checks.values import range_bounds
from despina.audit.report import (
    AuditReport,
    build_samples,
    counts_of,
    health_score,
)
from despina.audit.runner import run_checks, select_checks
from despina.core.config import AuditConfig, TrainConfig
from despina.core.errors import DataError
from despina.core.progress import NullProgress, ProgressReporter
from despina.core.registry import Registry
from despina.data.tables import Table, natural_order, numeric_values, read_table
from despina.jobs.audit import package_versions, prepare_out
from despina.jobs.rounds import (
    VECTOR_BATCH,
    VECTOR_TRAIN,
    Stages,
    checks_summary,
    cross_validated_rounds,
    finding_columns,
    frozen_round,
    is_frozen,
    needs_model,
    train_defaults,
    write_flat_outputs,
)
from despina.jobs.serving_artifacts import write_record_artifacts
from despina.models.base import ModelBuilder
from despina.models.mlp import MLPBuilder
from despina.models.store import save_model
from despina.models.user import user_builder
from despina.preprocessing.table import TablePipeline
from despina.training.trainer import train_classifier

logger = logging.getLogger(__name__)


def table_train_config(cfg: AuditConfig, rows: int) -> TrainConfig:
    """The training config with the table defaults for the fields the user left."""
    return train_defaults(cfg, rows, VECTOR_TRAIN, VECTOR_BATCH)


def audit_table(
    source: str | Path,
    out: str | Path,
    config: AuditConfig | None = None,
    *,
    target: str | None = None,
    schema_file: str | Path | None = None,
    progress: ProgressReporter | None = None,
    registry: Registry[type[Check]] | None = None,
    model_file: str | Path | None = None,
) -> AuditReport:
    """Audit a CSV or Parquet table and write samples.csv, summary.json, report.html,
    cleaned.csv and (with a target column) model/ into ``out``."""
    cfg = config or AuditConfig()
    progress = progress or NullProgress()
    stage = Stages()
    timings = stage.timings

    checks = select_checks(registry or default_registry("table"), cfg.checks)
    with stage("load"):
        table = read_table(source, target, schema_file)
    out_dir = prepare_out(Path(out), str(source))
    n = len(table.frame)
    given = table.labels or [""] * n
    valid = np.array([g != "" for g in given]) if target else np.ones(n, bool)
    class_names = sorted({g for g in given if g}, key=natural_order)
    if target is not None and len(class_names) < 2:
        only = repr(class_names[0]) if class_names else "no value"
        raise DataError(
            f"target column {target!r} has {only} in every row: an audit needs at least two "
            "classes to learn from (or leave --target out to check values, duplicates and "
            "outliers only)"
        )
    index = {c: i for i, c in enumerate(class_names)}
    y = np.array([index[g] for g in given if g], np.int64) if target else None
    ctx = AuditContext(
        ids=table.row_ids,
        given_labels=given,
        class_names=class_names,
        valid=valid,
        load_defects=[None if v else "missing_label" for v in valid],
        labels=y,
        table=table,
    )
    pipeline = TablePipeline(table.schema).fit(table.frame)
    x = pipeline.transform(table.frame)
    ctx.table_matrix = pipeline.transform(table.frame, clip=False)
    layout = pipeline.layout
    mlp = MLPBuilder(layout.numeric, layout.cardinalities)
    model_wanted = y is not None and needs_model(checks)
    frozen = is_frozen(model_file)
    user = (
        user_builder(model_file, x[valid], len(class_names))
        if model_wanted and not frozen
        else None
    )
    build: ModelBuilder = user or mlp
    train_cfg = table_train_config(cfg, int(valid.sum()))
    round_probs: list[np.ndarray] = []
    if model_wanted:
        with stage("cross_validation"):
            round_probs = (
                frozen_round(ctx, x[valid], model_file)
                if frozen and model_file is not None
                else cross_validated_rounds(ctx, x[valid], checks, cfg, train_cfg, build, progress)
            )

    with stage("checks"):
        outcomes = run_checks(ctx, checks, progress)
    df = build_samples(ctx, [""] * n, outcomes)
    df = _with_table_columns(df, table, outcomes)

    model_info: dict[str, Any] = {}
    if frozen:
        model_info["frozen"] = str(model_file)
    elif y is not None and model_wanted:
        with stage("final_model"):
            keep = _training_rows(df)[valid]
            cleaned_label = df["suggested_label"].where(df["is_label_issue"], df["given_label"])
            y_final = np.array([index[v] for v in cleaned_label[valid]], np.int64)
            model = train_classifier(
                x[valid][keep], y_final[keep], len(class_names), cfg.model, train_cfg,
                cfg.seed, build=build,
            )  # fmt: skip
            model_dir = out_dir / "model"
            save_model(
                model,
                model_dir,
                class_names,
                {
                    "kind": "table",
                    "numeric": layout.numeric,
                    "cardinalities": list(layout.cardinalities),
                    "width": mlp.width,
                    "depth": mlp.depth,
                    "activation": mlp.activation,
                    "trained_on": int(keep.sum()),
                },
            )
            pipeline.save(model_dir / "preprocessing.json")
            rows = np.flatnonzero(valid)[keep]
            # The range the serving flags use: the value check's bounds over the rows the
            # model learned from, whichever checks ran.
            raw = {c: numeric_values(table.frame[c])[rows] for c in table.schema.numeric}
            bounds = {c: list(b) for c, v in raw.items() if (b := range_bounds(v)) is not None}
            reference = write_record_artifacts(
                model, model_dir, x[rows], y_final[keep], [ctx.ids[r] for r in rows], raw,
                {"kind": "table", "bounds": bounds},
                validation_fraction=train_cfg.validation_fraction, seed=cfg.seed,
            )  # fmt: skip
            model_info["onnx_max_difference"] = reference["onnx_max_difference"]

    values = outcomes.get("values")
    value_details = values.result.details if values is not None and values.result else {}
    summary: dict[str, Any] = {
        "source": table.source,
        "kind": "table",
        "target": target,
        "rows": n,
        **_streamed(table, n),
        "classes": class_names,
        "schema": table.schema.model_dump(mode="json"),
        "counts": counts_of(df),
        "health_score": round(health_score(df), 4),
        "constant_columns": value_details.get("constant_columns", []),
        "near_constant_columns": value_details.get("near_constant_columns", []),
        "range_bounds": value_details.get("bounds", {}),
        "checks": checks_summary(outcomes),
        "config": {**cfg.model_dump(mode="json"), "train": train_cfg.model_dump(mode="json")},
        "oof_accuracy": None
        if ctx.pred_probs is None or y is None
        else round(float((ctx.pred_probs.argmax(axis=1) == y).mean()), 4),
        "model": model_info,
        "timings": timings,
        "versions": package_versions(),
    }
    with stage("report"):
        cleaned = cleaned_table(df, table, cfg.drop_label_issues)
        samples = write_flat_outputs(out_dir, df, summary, cleaned)
    summary["timings"] = timings
    return AuditReport(
        out_dir, samples, summary, outcomes, ctx.pred_probs, ctx.embeddings, round_probs
    )


def _with_table_columns(df: pd.DataFrame, table: Table, outcomes: dict[str, Any]) -> pd.DataFrame:
    """The findings with the table's own columns (prefixed where a name collides)."""
    df = finding_columns(df, outcomes)
    own = table.frame.reset_index(drop=True).copy()
    own.columns = [f"column:{c}" if c in df.columns else c for c in own.columns]
    return pd.concat([df.iloc[:, :1], own, df.iloc[:, 1:]], axis=1)


def _training_rows(df: pd.DataFrame) -> np.ndarray:
    """Rows the final model learns from: no copies, no mistyped or out-of-range cells."""
    broken = df["defects"].str.contains(r"\btype\b|\brange\b", regex=True)
    return np.asarray(~df["is_duplicate"] & ~broken)


def cleaned_table(df: pd.DataFrame, table: Table, drop_label_issues: bool) -> pd.DataFrame:
    """The table's own rows and columns without copies and rows with mistyped or
    out-of-range cells; label issues relabeled (or dropped) in the target column."""
    keep = _training_rows(df)
    if drop_label_issues:
        keep &= ~df["is_label_issue"].to_numpy(bool)
    out = table.frame.reset_index(drop=True).loc[keep].copy()
    target = table.schema.target
    if target is not None and not drop_label_issues:
        fix = (df["is_label_issue"] & (df["suggested_label"] != "")).to_numpy(bool)[keep]
        new = df["suggested_label"].to_numpy(object)[keep]
        out[target] = np.where(fix, new, out[target].to_numpy(object))
    return out


def _streamed(table: Table, n: int) -> dict[str, Any]:
    """The summary's account of a table too large to hold: what was counted over the file."""
    if table.streamed is None:
        return {}
    return {
        "streamed": {
            "rows_in_file": table.streamed.rows_in_file,
            "duplicate_rows_in_file": table.streamed.duplicate_rows,
            "sampled_rows": n,
        }
    }

"""The sequence audit: read series → value checks → cross-validate a 1D-CNN, GRU, LSTM or
hybrid → checks → report → final model. The outputs have the other audits' shape."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from despina.audit.base import AuditContext, Check
from despina.audit.checks import default_registry
from despina.audit.checks.series import long_window
from despina.audit.report import (
    AuditReport,
    build_samples,
    counts_of,
    health_score,
)
from despina.audit.runner import run_checks, select_checks
from despina.core.config import AuditConfig, TrainConfig
from despina.core.errors import ConfigError, DataError
from despina.core.progress import NullProgress, ProgressReporter
from despina.core.registry import Registry
from despina.data.sequences import SequenceSet, read_sequences
from despina.data.tables import natural_order
from despina.jobs.audit import package_versions, prepare_out
from despina.jobs.rounds import (
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
from despina.models.sequence import FAMILIES, Family, SequenceBuilder
from despina.models.store import save_model
from despina.models.user import user_builder
from despina.preprocessing.sequence import SequencePipeline
from despina.training.forecast import forecast_residuals
from despina.training.trainer import train_classifier

#: Training defaults for series: no image augmentation, more epochs than images (an epoch
#: is few batches, and every one of them runs), a batch of about a tenth of the series
#: within these bounds.
SEQUENCE_TRAIN = {"augment": False, "epochs": 40, "max_steps": None, "patience": 8,
                  "learning_rate": 3e-3}  # fmt: skip
SEQUENCE_BATCH = (16, 128)
#: The family when none is named: the 1D-CNN (the fastest; see docs/benchmarks.md,
#: sequences, for the families side by side).
DEFAULT_FAMILY: Family = "cnn"


def sequence_train_config(cfg: AuditConfig, series: int) -> TrainConfig:
    """The training config with the sequence defaults for the fields the user left."""
    return train_defaults(cfg, series, SEQUENCE_TRAIN, SEQUENCE_BATCH)


def audit_sequences(
    source: str | Path,
    out: str | Path,
    config: AuditConfig | None = None,
    *,
    target: str | None = None,
    family: str | None = None,
    progress: ProgressReporter | None = None,
    registry: Registry[type[Check]] | None = None,
    model_file: str | Path | None = None,
) -> AuditReport:
    """Audit labelled (or unlabelled) series from a CSV or Parquet file and write
    samples.csv, summary.json, report.html, cleaned.csv and (with a target) model/."""
    cfg = config or AuditConfig()
    progress = progress or NullProgress()
    chosen = family or DEFAULT_FAMILY
    if chosen not in FAMILIES:
        raise ConfigError(f"--model {chosen}: use one of {', '.join(FAMILIES)}")
    stage = Stages()
    timings = stage.timings

    checks = select_checks(registry or default_registry("sequence"), cfg.checks)
    with stage("load"):
        seq = read_sequences(source, target)
    out_dir = prepare_out(Path(out), str(source))
    n = len(seq.ids)
    given = seq.labels or [""] * n
    valid = np.array(
        [(g != "" or target is None) and ln > 1 for g, ln in zip(given, seq.lengths, strict=True)]
    )
    class_names = sorted(
        {g for g, v in zip(given, valid, strict=True) if g and v}, key=natural_order
    )
    if target is not None and len(class_names) < 2:
        only = repr(class_names[0]) if class_names else "no value"
        raise DataError(
            f"target column {target!r} has {only} for every readable series: an audit needs "
            "at least two classes (or leave --target out for the value and duplicate checks)"
        )
    index = {c: i for i, c in enumerate(class_names)}
    y = np.array([index[g] for g, v in zip(given, valid, strict=True) if v and target], np.int64)
    ctx = AuditContext(
        ids=seq.ids,
        given_labels=given,
        class_names=class_names,
        valid=valid,
        load_defects=[None if v else "unreadable" for v in valid],
        labels=y if target else None,
        sequences=seq,
    )
    pipeline = SequencePipeline().fit(seq.x[valid])
    x = pipeline.transform(seq.x)
    family_build = SequenceBuilder(chosen, x.shape[1])
    train_cfg = sequence_train_config(cfg, int(valid.sum()))
    model_wanted = target is not None and needs_model(checks)
    frozen = is_frozen(model_file)
    user = (
        user_builder(model_file, x[valid], len(class_names))
        if model_wanted and not frozen
        else None
    )
    build: ModelBuilder = user or family_build
    round_probs: list[np.ndarray] = []
    if model_wanted:
        with stage("cross_validation"):
            round_probs = (
                frozen_round(ctx, x[valid], model_file)
                if frozen and model_file is not None
                else cross_validated_rounds(ctx, x[valid], checks, cfg, train_cfg, build, progress)
            )
    if {"anomaly", "values"} & {c.name for c in checks}:
        with stage("forecast"):
            ctx.residuals = residuals(seq, cfg.seed)
    with stage("checks"):
        outcomes = run_checks(ctx, checks, progress)
    df = finding_columns(build_samples(ctx, [""] * n, outcomes), outcomes)
    df.insert(1, "length", seq.lengths)

    model_info: dict[str, Any] = {}
    if frozen:
        model_info["frozen"] = str(model_file)
    elif model_wanted:
        with stage("final_model"):
            keep = ~df["is_duplicate"].to_numpy(bool)[valid]
            fixed = df["suggested_label"].where(df["is_label_issue"], df["given_label"])
            y_final = np.array([index[v] for v in fixed[valid]], np.int64)
            model = train_classifier(x[valid][keep], y_final[keep], len(class_names), cfg.model,
                                     train_cfg, cfg.seed, build=build)  # fmt: skip
            model_dir = out_dir / "model"
            save_model(model, model_dir, class_names, {
                "kind": "sequence", "family": "user" if user else chosen, "channels": x.shape[1],
                "width": family_build.width, "length": x.shape[2], "layout": "NCL",
                "trained_on": int(keep.sum()),
            })  # fmt: skip
            pipeline.save(model_dir / "preprocessing.json")
            rows = np.flatnonzero(valid)[keep]
            raw = seq.x[rows]
            drift = {}
            for c, channel in enumerate(seq.channels):
                drift[f"{channel}_mean"] = np.nanmean(raw[:, c], axis=1)
                drift[f"{channel}_std"] = np.nanstd(raw[:, c], axis=1)
            reference = write_record_artifacts(
                model, model_dir, x[rows], y_final[keep], [seq.ids[r] for r in rows], drift,
                {"kind": "sequence", "channels": seq.channels, "length": int(x.shape[2])},
                validation_fraction=train_cfg.validation_fraction, seed=cfg.seed,
            )  # fmt: skip
            model_info["onnx_max_difference"] = reference["onnx_max_difference"]

    summary: dict[str, Any] = {
        "source": seq.source,
        "kind": "sequence",
        "layout": seq.layout,
        "target": target,
        "rows": n,
        "channels": seq.channels,
        "length": int(seq.x.shape[2]),
        "model_family": ("frozen" if frozen else "user" if user else chosen)
        if model_wanted
        else None,
        "classes": class_names,
        "counts": {**counts_of(df), "anomalies": _anomaly_count(outcomes)},
        "health_score": round(health_score(df), 4),
        "checks": checks_summary(outcomes),
        "config": {**cfg.model_dump(mode="json"), "train": train_cfg.model_dump(mode="json")},
        "oof_accuracy": None
        if ctx.pred_probs is None
        else round(float((ctx.pred_probs.argmax(axis=1) == y).mean()), 4),
        "model": model_info,
        "timings": timings,
        "versions": package_versions(),
    }
    with stage("report"):
        label = df["suggested_label"].where(
            df["is_label_issue"] & (df["suggested_label"] != ""), df["given_label"]
        )
        cleaned = pd.DataFrame({"id": df["id"], "label": label})[~df["is_duplicate"] & valid]
        anomaly = outcomes.get("anomaly")
        if anomaly is not None and anomaly.result is not None:
            found = anomaly.result.details["anomalies"]
            pd.DataFrame(
                [{"series_id": seq.ids[k], **a} for k, rows in enumerate(found) for a in rows],
                columns=["series_id", "channel", "kind", "start", "end", "z"],
            ).to_csv(out_dir / "anomalies.csv", index=False)
        series = {i: seq.x[k, :, : max(1, int(seq.lengths[k]))] for k, i in enumerate(seq.ids)}
        samples = write_flat_outputs(out_dir, df, summary, cleaned, series)
    summary["timings"] = timings
    return AuditReport(
        out_dir, samples, summary, outcomes, ctx.pred_probs, ctx.embeddings, round_probs
    )


def residuals(seq: SequenceSet, seed: int) -> dict[tuple[int, int], np.ndarray]:
    """A forecaster's residuals for each channel of the series long enough for the anomaly
    check: one forecaster per channel, reading half an anomaly window (the median one)."""
    out: dict[tuple[int, int], np.ndarray] = {}
    for c in range(seq.x.shape[1]):
        keys, signals, windows = [], [], []
        for k, length in enumerate(seq.lengths):
            x = seq.x[k, c, : int(length)].astype(np.float64)
            w = long_window(x)
            if w is not None:
                keys.append((k, c))
                signals.append(x)
                windows.append(w)
        if signals:
            found = forecast_residuals(signals, int(np.median(windows)) // 2, seed)
            out.update(zip(keys, found, strict=True))
    return out


def _anomaly_count(outcomes: dict[str, Any]) -> int:
    anomaly = outcomes.get("anomaly")
    if anomaly is None or anomaly.result is None:
        return 0
    return sum(len(rows) for rows in anomaly.result.details["anomalies"])

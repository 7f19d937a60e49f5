"""The main job: load → decode once → cross-validate a CNN → run checks → report → final model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from despina.audit.base import AuditContext, Check
from despina.audit.checks import default_registry
from despina.audit.embedding_map import write_map
from despina.audit.image_stats import ImageStats
from despina.audit.report import (
    AuditReport,
    build_samples,
    cleaned_manifest,
    counts_of,
    health_score,
    write_outputs,
)
from despina.audit.runner import run_checks, select_checks
from despina.core.config import AuditConfig
from despina.core.errors import ConfigError, DataError
from despina.core.progress import NullProgress, ProgressReporter
from despina.core.registry import Registry
from despina.data.corrections import ACTIONS, apply_to_dataset, apply_to_findings, read_corrections
from despina.data.decode import decode_image
from despina.data.images import ImageDataset, ImageRecord
from despina.data.sources import load_source
from despina.jobs.rounds import (
    VECTOR_BATCH,
    VECTOR_TRAIN,
    Stages,
    checks_summary,
    cross_validated_rounds,
    frozen_round,
    is_frozen,
    needs_model,
    train_defaults,
    use_round,
)
from despina.jobs.scan import ScanResult, scan
from despina.jobs.serving_artifacts import write_serving_artifacts
from despina.models.base import ModelBuilder
from despina.models.frozen import Backbone, torch_backbone_onnx
from despina.models.mlp import MLPBuilder
from despina.models.store import save_model
from despina.models.user import user_builder
from despina.preprocessing.image import ImagePipeline
from despina.training.crossval import CrossValResult
from despina.training.trainer import train_classifier

logger = logging.getLogger(__name__)


def prepare_out(out: Path, source: str) -> Path:
    out = out.expanduser().resolve()
    src = Path(source).expanduser()
    if src.exists() and (out == src.resolve() or src.resolve().is_relative_to(out)):
        raise ConfigError(f"--out {out} contains the source; choose a separate output folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def package_versions() -> dict[str, str]:
    found = {}
    for pkg in (
        "despina",
        "torch",
        "numpy",
        "cleanlab",
        "faiss-cpu",
        "opencv-python-headless",
        "scikit-learn",
    ):
        try:
            found[pkg] = version(pkg)
        except PackageNotFoundError:
            found[pkg] = "unknown"
    return found


def auto_image_size(records: Sequence[ImageRecord], depth: int, max_pixels: int) -> int:
    """The median short side of a sample of images, capped at 32, a multiple of 2**depth.

    Small images stay at their native size (no information to gain by upscaling); larger
    ones train at 32 px, which keeps a CPU audit of 10k images within minutes.
    """
    step = 2**depth
    rng = np.random.default_rng(0)
    pick = rng.choice(len(records), size=min(64, len(records)), replace=False)
    sides = []
    for i in pick:
        dec = decode_image(records[int(i)], max_pixels)
        if dec.image is not None:
            sides.append(min(dec.image.shape[:2]))
    side = int(np.median(sides)) if sides else 32
    return int(min(32, max(step * 2, -(-side // step) * step)))


@dataclass
class Prepared:
    """An image source decoded and made the model's input: what the cross-validation and
    the checks start from. ``x`` and ``ctx.labels`` hold the readable images only; the
    decode pass itself is not kept (its pixels are in ``x``, its statistics in ``ctx``)."""

    dataset: ImageDataset
    size: int  # the side every image was resized to
    pipeline: ImagePipeline
    x: np.ndarray
    ctx: AuditContext


def prepare_images(
    dataset: ImageDataset,
    cfg: AuditConfig,
    net: Backbone | None = None,
    scanned: tuple[list[str], ScanResult] | None = None,
    stage: Stages | None = None,
    progress: ProgressReporter | None = None,
) -> Prepared:
    """Decode ``dataset`` (or take its ``scanned`` decode pass), fit the preprocessing and
    make the model input; refuses a source with no readable image or a single class."""
    stage = stage or Stages()
    progress = progress or NullProgress()
    records = dataset.records
    n = len(records)
    if scanned is not None:
        ids, result = scanned
        if ids != [r.id for r in records]:
            raise DataError(
                f"{dataset.source} changed after it was scanned: it lists {n} images now, the "
                f"scan holds {len(ids)} (or another set or order); audit it again from the start"
            )
        size = int(result.resized.shape[1])
    else:
        size = (
            (net.side if net is not None else None)
            or cfg.image_size
            or auto_image_size(records, cfg.model.depth, cfg.max_pixels)
        )
        with stage("decode"):
            progress.start("decode", n)
            result = scan(
                records,
                size,
                "resize",
                cfg.max_pixels,
                cfg.worker_count,
                on_done=lambda k: progress.advance("decode", k),
            )
            progress.finish("decode")
    valid = np.array([f is not None for f in result.features])
    if not valid.any():
        raise DataError(
            f"none of the {n} files in {dataset.source} could be read as an image "
            f"(first problem: {result.reasons[0]})"
        )
    class_names = dataset.class_names
    cls_index = {c: i for i, c in enumerate(class_names)}
    y = np.array([cls_index[r.label] for r in records])[valid]
    present = np.unique(y)
    if len(present) < 2:
        raise DataError(
            f"only one class ({class_names[present[0]]!r}) has readable images; an audit "
            "needs at least two classes to learn what each looks like"
        )
    stats = ImageStats.from_features(result.features)
    pipeline = ImagePipeline(size, "resize", cfg.color_mode)
    gray_frac = float(np.nanmean(stats.column("color_spread")[valid] <= 8))
    pixels = result.resized if valid.all() else result.resized[valid]
    pipeline.fit(pixels, grayscale_fraction=gray_frac)
    x = pipeline.transform_resized(pixels)
    # Classes are renumbered to those present among readable images for training.
    remap = {int(c): i for i, c in enumerate(present)}
    y_train = np.array([remap[int(v)] for v in y])
    train_names = [class_names[int(c)] for c in present]
    ctx = AuditContext(
        ids=[r.id for r in records],
        given_labels=[r.label for r in records],
        class_names=train_names,
        valid=valid,
        load_defects=result.load_defects,
        labels=y_train,
        image_stats=stats,
        threads=cfg.worker_count,
    )
    return Prepared(dataset, int(result.resized.shape[1]), pipeline, x, ctx)


def audit(
    source: str | Path,
    out: str | Path,
    config: AuditConfig | None = None,
    *,
    root: str | Path | None = None,
    progress: ProgressReporter | None = None,
    registry: Registry[type[Check]] | None = None,
    model_file: str | Path | None = None,
    backbone: str | Path | None = None,
    scanned: tuple[list[str], ScanResult] | None = None,
    folds: Sequence[CrossValResult] | None = None,
    corrections: str | Path | None = None,
) -> AuditReport:
    """Audit an image dataset and write samples.csv, summary.json, report.html, cleaned.csv
    and model/ into ``out``; ``model_file``: a user's model instead of the CNN; ``backbone``:
    an ONNX network whose embeddings a small head learns per fold (no model/ then);
    ``scanned``: the source's ids and decode pass, done already (by a sharded scan);
    ``folds``: each round's cross-validation, done already (by a group's fold tasks);
    ``corrections``: a manifest of reviews (``despina review export``) applied first.
    Findings are results; bad input raises a DespinaError."""
    cfg = config or AuditConfig()
    progress = progress or NullProgress()
    stage = Stages()
    timings = stage.timings

    checks = select_checks(registry or default_registry(), cfg.checks)
    with stage("load"):
        dataset = load_source(source, root)
        fixes = read_corrections(corrections) if corrections is not None else {}
        dataset = apply_to_dataset(dataset, fixes) if fixes else dataset
    out_dir = prepare_out(Path(out), str(source))
    records = dataset.records

    if backbone is not None and model_file is not None:
        raise ConfigError("give --model or --backbone, not both")
    if backbone is not None and Path(backbone).suffix.lower() == ".py":
        backbone = torch_backbone_onnx(Path(backbone), Path(out) / "backbone.onnx")
    net = Backbone(backbone) if backbone is not None else None
    if net is not None:  # the backbone's own input size and colours
        cfg = cfg.model_copy(update={"color_mode": "grayscale" if net.channels == 1 else "rgb"})
    prep = prepare_images(dataset, cfg, net, scanned, stage, progress)
    x, ctx, pipeline, size = prep.x, prep.ctx, prep.pipeline, prep.size
    assert ctx.labels is not None and ctx.image_stats is not None
    valid, stats, y_train, train_names = ctx.valid, ctx.image_stats, ctx.labels, ctx.class_names
    del scanned  # its pixels and statistics are in x and ctx now: not held twice

    frozen = is_frozen(model_file)
    build: ModelBuilder | None = None if frozen else user_builder(model_file, x, len(train_names))
    train_cfg = cfg.train
    if net is not None:
        with stage("backbone"):
            x = net.features(x)
        build = MLPBuilder(x.shape[1], (), width=128, depth=1)
        train_cfg = train_defaults(cfg, len(x), VECTOR_TRAIN, VECTOR_BATCH)
    round_probs: list[np.ndarray] = []
    model_wanted = needs_model(checks)
    if model_wanted and frozen and model_file is not None:
        with stage("cross_validation"):
            round_probs = frozen_round(ctx, x, model_file)
    elif model_wanted and folds:  # trained already, by the group's fold tasks
        for cv in folds:
            use_round(ctx, cv)
        round_probs = [cv.pred_probs for cv in folds]
    elif model_wanted:
        with stage("cross_validation"):
            round_probs = cross_validated_rounds(ctx, x, checks, cfg, train_cfg, build, progress)

    with stage("checks"):
        outcomes = run_checks(ctx, checks, progress)
    df = build_samples(ctx, [r.path for r in records], outcomes)
    apply_to_findings(df, fixes)
    with stage("map"):
        write_map(out_dir, ctx, cfg.seed, cfg.map_rows)

    # A frozen model is the user's, a backbone's head alone serves nothing, and checks that
    # need no model (duplicates, defects) asked for none: no model/ then.
    if model_wanted and not frozen and backbone is None:
        with stage("final_model"):
            # The final model learns the cleaned manifest: its rows, with their new labels.
            cleaned = cleaned_manifest(df, cfg.drop_label_issues)
            new_label = dict(zip(cleaned["id"], cleaned["label"], strict=True))
            train_index = {name: i for i, name in enumerate(train_names)}
            y_final = np.array(
                [train_index.get(new_label.get(i, ""), -1) for i in np.array(ctx.ids)[valid]]
            )
            keep = y_final >= 0
            # The kept rows once, for the model and its serving artifacts alike.
            x, y_final = (x, y_final) if keep.all() else (x[keep], y_final[keep])
            progress.start("final model", cfg.train.epochs_given(int(keep.sum())))
            model = train_classifier(
                x,
                y_final,
                len(train_names),
                cfg.model,
                cfg.train,
                cfg.seed,
                on_epoch=lambda *_: progress.advance("final model"),
                build=build,
            )
            progress.finish("final model")
            model_dir = out_dir / "model"
            save_model(
                model,
                model_dir,
                train_names,
                {
                    "in_channels": pipeline.channels,
                    **cfg.model.model_dump(),
                    "trained_on": int(keep.sum()),
                },
            )
            pipeline.save(model_dir / "preprocessing.json")
            write_serving_artifacts(
                model,
                model_dir,
                x,
                y_final,
                list(np.array(ctx.ids)[valid][keep]),
                stats.values[valid][keep],
                validation_fraction=cfg.train.validation_fraction,
                seed=cfg.seed,
            )

    summary: dict[str, Any] = {
        "source": dataset.source,
        "classes": dataset.class_names,
        "counts": counts_of(df),
        "health_score": round(health_score(df), 4),
        "checks": checks_summary(outcomes),
        "config": cfg.model_dump(mode="json"),
        # How well the out-of-fold CNN agrees with the given labels: a low value means the
        # model is too weak (too few epochs or images) for its findings to be trusted.
        "oof_accuracy": None
        if ctx.pred_probs is None
        else round(float((ctx.pred_probs.argmax(axis=1) == y_train).mean()), 4),
        "color_mode": pipeline.mode_,
        "backbone": None if backbone is None else str(backbone),
        "image_size": size,
        "timings": timings,
        "versions": package_versions(),
        "corrections": {a: sum(v[0] == a for v in fixes.values()) for a in sorted(ACTIONS)}
        if fixes
        else {},
    }
    with stage("report"):
        samples = write_outputs(out_dir, df, summary, records, outcomes, cfg.drop_label_issues)
    summary["timings"] = timings
    return AuditReport(
        out_dir, samples, summary, outcomes, ctx.pred_probs, ctx.embeddings, round_probs
    )

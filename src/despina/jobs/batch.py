"""Built-in batch jobs the control plane runs as tasks: preprocess, train and predict.

Each works on a list of :class:`ImageRecord` (one partition) or a whole source, and reports
progress per image, so a task's progress row moves while it runs. Torch is imported only
by the jobs that use it: a preprocess worker starts in about a second instead of five.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from despina.core.config import FrozenModel, ModelConfig, TrainConfig
from despina.core.errors import DataError
from despina.data.decode import decode_image
from despina.data.images import ImageRecord
from despina.preprocessing.image import ImagePipeline, resize_image, to_mode

OnItems = Callable[[int], None]


class PreprocessConfig(FrozenModel):
    """Decode → colour mode → resize → normalize ``(x/255 - mean) / std``."""

    size: int = Field(28, ge=4, le=1024)
    fit: Literal["resize", "pad", "crop"] = "resize"
    color_mode: Literal["grayscale", "rgb"] = "grayscale"
    mean: float = 0.5
    std: float = Field(0.5, gt=0)
    max_pixels: int = Field(64_000_000, ge=1)


def preprocess_records(
    records: Sequence[ImageRecord], cfg: PreprocessConfig, on_items: OnItems | None = None
) -> pa.Table:
    """One row per readable image: id, label, normalized pixels (float32, C×H×W flattened).

    Unreadable images get a row with empty pixels and the reason in ``error``, so nothing
    is lost silently and a re-run writes the same rows.
    """
    channels = 1 if cfg.color_mode == "grayscale" else 3
    width = channels * cfg.size * cfg.size
    pixels = np.zeros((len(records), width), np.float32)
    errors: list[str | None] = []
    for i, rec in enumerate(records):
        dec = decode_image(rec, cfg.max_pixels)
        if dec.image is None:
            errors.append(f"{dec.defect}: {dec.reason}")
        else:
            x = to_mode(resize_image(dec.image, cfg.size, cfg.fit), cfg.color_mode)
            pixels[i] = ((x - cfg.mean) / cfg.std).reshape(-1)
            errors.append(None)
        if on_items and (i + 1) % 256 == 0:
            on_items(256)
    if on_items and len(records) % 256:
        on_items(len(records) % 256)
    flat = pa.array(pixels.reshape(-1), pa.float32())
    return pa.table(
        {
            "id": pa.array([r.id for r in records], pa.string()),
            "label": pa.array([r.label for r in records], pa.string()),
            "pixels": pa.FixedSizeListArray.from_arrays(flat, width),
            "channels": pa.array([channels] * len(records), pa.int8()),
            "size": pa.array([cfg.size] * len(records), pa.int16()),
            "error": pa.array(errors, pa.string()),
        }
    )


class TrainJobConfig(FrozenModel):
    """Train one CNN on a whole source and save it with its preprocessing."""

    image_size: int = Field(28, ge=8, le=512)
    color_mode: Literal["auto", "rgb", "grayscale"] = "auto"
    seed: int = 0
    max_pixels: int = Field(64_000_000, ge=1)
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    corrections: str | None = Field(
        None,
        description="a corrections manifest (despina review export): relabeled samples "
        "train with their new label; dropped ones and outliers are left out",
    )


def train_model(
    source: str,
    out_dir: Path,
    cfg: TrainJobConfig,
    on_epoch: Callable[[int, float, float, float], None] | None = None,
) -> dict[str, Any]:
    """Train on every readable image of ``source``; write ``out_dir/model``."""
    from despina.audit.image_stats import ImageStats
    from despina.data.sources import load_source
    from despina.jobs.scan import scan
    from despina.jobs.serving_artifacts import write_serving_artifacts
    from despina.models.store import save_model
    from despina.training.trainer import train_classifier

    dataset = load_source(source)
    if cfg.corrections is not None:
        from despina.data.corrections import apply_to_dataset, read_corrections

        fixes = read_corrections(cfg.corrections)
        dataset = apply_to_dataset(dataset, fixes, leave_out=("drop", "outlier"))
    scanned = scan(dataset.records, cfg.image_size, "resize", cfg.max_pixels)
    valid = np.array([f is not None for f in scanned.features])
    names = dataset.class_names
    labels = np.array([names.index(r.label) for r in dataset.records])[valid]
    if len(np.unique(labels)) < 2:
        raise DataError(f"{source}: training needs readable images of at least two classes")
    pipeline = ImagePipeline(cfg.image_size, "resize", cfg.color_mode).fit(scanned.resized[valid])
    x = pipeline.transform_resized(scanned.resized[valid])
    model = train_classifier(
        x, labels, len(names), cfg.model, cfg.train, cfg.seed, on_epoch=on_epoch
    )
    model_dir = out_dir / "model"
    save_model(
        model,
        model_dir,
        names,
        {"in_channels": pipeline.channels, **cfg.model.model_dump(), "trained_on": len(x)},
    )
    pipeline.save(model_dir / "preprocessing.json")
    stats = ImageStats.from_features(scanned.features).values[valid]
    ids = [r.id for r, ok in zip(dataset.records, valid, strict=True) if ok]
    reference = write_serving_artifacts(
        model,
        model_dir,
        x,
        labels,
        ids,
        stats,
        validation_fraction=cfg.train.validation_fraction,
        seed=cfg.seed,
    )
    return {
        "images": int(valid.sum()),
        "unreadable": int((~valid).sum()),
        "train_accuracy": reference["training_accuracy"],
    }


class PredictConfig(FrozenModel):
    """Classify every image of a partition with a saved model folder."""

    model: str = Field(description="a model folder written by audit or train (…/model)")
    top_k: int = Field(3, ge=1, le=100)
    max_pixels: int = Field(64_000_000, ge=1)


def predict_records(
    records: Sequence[ImageRecord], cfg: PredictConfig, on_items: OnItems | None = None
) -> pa.Table:
    """id, label, predicted label, confidence and top-k per image (null where unreadable)."""
    from despina.models.store import load_model
    from despina.training.trainer import predict

    model_dir = Path(cfg.model).expanduser()
    saved = load_model(model_dir)
    pipeline = ImagePipeline.load(model_dir / "preprocessing.json")
    images, ok = [], []
    for rec in records:
        dec = decode_image(rec, cfg.max_pixels)
        ok.append(dec.image is not None)
        if dec.image is not None:
            images.append(dec.image)
    probs = predict(saved.model, pipeline.transform(images))[0] if images else np.zeros((0, 1))
    names = saved.class_names
    predicted: list[str | None] = []
    confidence: list[float | None] = []
    top: list[list[str] | None] = []
    k = 0
    for good in ok:
        if not good:
            predicted.append(None)
            confidence.append(None)
            top.append(None)
            continue
        p = probs[k]
        k += 1
        order = np.argsort(-p)[: cfg.top_k]
        predicted.append(names[int(order[0])])
        confidence.append(float(p[order[0]]))
        top.append([names[int(j)] for j in order])
    if on_items:
        on_items(len(records))
    return pa.table(
        {
            "id": [r.id for r in records],
            "label": [r.label for r in records],
            "predicted_label": pa.array(predicted, pa.string()),
            "confidence": pa.array(confidence, pa.float32()),
            "top_k": pa.array(top, pa.list_(pa.string())),
        }
    )

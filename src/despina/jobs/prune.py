"""Structured channel pruning of a model folder's CNN, with a short fine-tune.

Whole channels go (Torch-Pruning finds which layers' channels are coupled, residual
additions included), so the convolutions themselves shrink: unstructured sparsity leaves
dense kernels that a CPU runs no faster. The pruned model is fine-tuned on the training
part of the data and written as a complete model folder: ONNX graph, a FAISS index and
reference statistics rebuilt from its own embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from despina.core.artifacts import MODEL_CONFIG, PREPROCESSING, WEIGHTS
from despina.core.errors import ConfigError, DataError, NotFoundError
from despina.security.envelope import read_artifact

HOLDOUT = 0.2
#: Channel counts are kept multiples of this (what CPU kernels vectorize over).
ROUND_TO = 4
#: Fine-tuning stops after this many epochs without a better held-out accuracy.
PATIENCE = 4


def labelled_data(model_dir: Path, source: str) -> dict[str, Any]:
    """``source``'s readable images as ``model_dir``'s model takes them: ``x``, integer
    ``labels`` in its classes, ``ids`` and image ``stats``; a DataError for a class the
    model does not know."""
    from despina.audit.image_stats import ImageStats
    from despina.data.sources import load_source
    from despina.jobs.scan import scan
    from despina.preprocessing.image import ImagePipeline

    pipeline = ImagePipeline.load(model_dir / PREPROCESSING)
    names = json.loads(read_artifact(model_dir / MODEL_CONFIG))["class_names"]
    dataset = load_source(source)
    unknown = sorted({r.label for r in dataset.records} - set(names))
    if unknown:
        raise DataError(
            f"{source} has classes the model does not know ({unknown[:5]}); compress with "
            "the data the model was trained on"
        )
    scanned = scan(dataset.records, pipeline.size, pipeline.fit_mode, 64_000_000)
    valid = np.array([f is not None for f in scanned.features])
    kept = [r for r, ok in zip(dataset.records, valid, strict=True) if ok]
    return {
        "x": pipeline.transform_resized(scanned.resized[valid]),
        "labels": np.array([names.index(r.label) for r in kept]),
        "ids": [r.id for r in kept],
        "stats": ImageStats.from_features(scanned.features).values[valid],
    }


def fine_tune(model: Any, x: np.ndarray, y: np.ndarray, max_epochs: int, seed: int) -> int:
    """AdamW with a cosine-decaying learning rate until the accuracy on a held-out tenth
    of ``x`` stops rising (patience :data:`PATIENCE` epochs), back to its best epoch: how
    long a pruned model needs depends on the data and on how much was pruned. Images are
    shifted as in training: without it a fine-tune on a few thousand images overfits. The
    number of epochs it ran."""
    import copy

    import torch
    from torch import nn

    from despina.training.trainer import random_shift, shift_pixels, validation_split

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    shift = shift_pixels(x) if x.ndim == 4 else 0
    tr, va = validation_split(y, 0.1, seed)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))
    batches = max(1, len(tr) // 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max_epochs * batches)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng(seed)

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            return float((model(xt[va]).argmax(1) == yt[va]).float().mean())

    best, best_state, stale, ran = accuracy(), copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(1, max_epochs + 1):
        ran = epoch
        model.train()
        for batch in np.array_split(rng.permutation(tr), batches):
            optimizer.zero_grad()
            xb = random_shift(xt[batch], generator, shift) if shift else xt[batch]
            loss_fn(model(xb), yt[batch]).backward()
            optimizer.step()
            schedule.step()
        score = accuracy()
        if score > best:
            best, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= PATIENCE:
                break
    model.load_state_dict(best_state)
    model.eval()
    return ran


def prune_folder(
    model_dir: Path,
    data: dict[str, Any],
    out: Path,
    fraction: float,
    *,
    seed: int = 0,
    epochs: int = 30,
) -> dict[str, Any]:
    """Prune ``fraction`` of every convolution's channels from ``model_dir``'s CNN,
    fine-tune it on ``data`` (:func:`labelled_data`; its training 80%, at most ``epochs``)
    and write a servable folder to ``out`` (no weights file: the pruned layout is in the
    ONNX graph). What was done, for ``model.json``."""
    import torch
    import torch_pruning as tp

    from despina.jobs.serving_artifacts import write_serving_artifacts
    from despina.models.store import load_model
    from despina.training.trainer import validation_split

    if not 0 < fraction < 1:
        raise ConfigError(f"--prune {fraction}: give the fraction of channels to remove, e.g. 0.5")
    if not (model_dir / WEIGHTS).is_file():
        raise NotFoundError(
            f"{model_dir} has no {WEIGHTS}: pruning needs the trained weights (a folder that "
            "was pruned before has none; prune the original)"
        )
    saved = load_model(model_dir)
    model = saved.model
    before = sum(p.numel() for p in model.parameters())
    example = torch.from_numpy(np.ascontiguousarray(data["x"][:1]))
    pruner = tp.pruner.MagnitudePruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=fraction,
        ignored_layers=[model.head],
        round_to=ROUND_TO,
    )
    pruner.step()
    train, _ = validation_split(data["labels"], HOLDOUT, seed)
    ran = fine_tune(model, data["x"][train], data["labels"][train], epochs, seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / PREPROCESSING).write_bytes(read_artifact(model_dir / PREPROCESSING))
    (out / MODEL_CONFIG).write_bytes(read_artifact(model_dir / MODEL_CONFIG))
    done = {
        "pruned_fraction": fraction,
        "parameters": [before, sum(p.numel() for p in model.parameters())],
        "fine_tune_epochs": ran,
    }
    write_serving_artifacts(model, out, data["x"], data["labels"], data["ids"], data["stats"],
                            validation_fraction=HOLDOUT, seed=seed)  # fmt: skip
    return done

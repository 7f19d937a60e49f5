"""Shared helpers for the benchmarks: noise injection, tables, model evaluation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import torch

from despina.audit.base import AuditContext
from despina.audit.image_stats import ImageStats
from despina.data.decode import as_rgb
from despina.data.images import ImageDataset
from despina.jobs.scan import scan
from despina.models import load_model
from despina.preprocessing import ImagePipeline

ASYMMETRIC_DIGITS = {0: 6, 1: 7, 2: 3, 3: 8, 4: 9, 5: 6, 6: 5, 7: 1, 8: 3, 9: 4}
# Fashion-MNIST: t-shirt<->shirt, pullover<->coat, sandal<->sneaker, trouser->dress, bag->t-shirt
ASYMMETRIC_FASHION = {0: 6, 6: 0, 2: 4, 4: 2, 5: 7, 7: 5, 1: 3, 3: 1, 8: 0, 9: 7}


def flip_labels(
    y: np.ndarray, rate: float, kind: str, k: int, seed: int, mapping: dict[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy labels and the mask of flipped samples (exactly ``rate`` of them)."""
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(y), bool)
    flipped[rng.choice(len(y), round(rate * len(y)), replace=False)] = True
    noisy = y.copy()
    for i in np.flatnonzero(flipped):
        if kind == "symmetric":
            noisy[i] = rng.choice([c for c in range(k) if c != y[i]])
        else:
            noisy[i] = mapping[int(y[i])]
    return noisy, flipped


def write_folder(folder: Path, images: np.ndarray, labels: np.ndarray) -> list[str]:
    """Images as PNGs in class subfolders; returns the ids (relative paths) in order."""
    ids = []
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        rel = f"{y}/{i:05d}.png"
        (folder / str(y)).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / rel), img)
        ids.append(rel)
    return ids


def accuracy_of_saved(model_dir: Path, images: np.ndarray, y: np.ndarray) -> float:
    saved = load_model(model_dir)
    pipe = ImagePipeline.load(model_dir / "preprocessing.json")
    x = torch.from_numpy(pipe.transform([as_rgb(im) for im in images]))
    with torch.no_grad():
        pred = saved.model(x).argmax(1).numpy()
    names = np.array(saved.class_names)  # class names; y as names or as integer labels
    return float((names[pred] == np.asarray(y).astype(str)).mean())


def prf(flags: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    tp = float((flags & truth).sum())
    p = tp / flags.sum() if flags.sum() else 1.0
    r = tp / truth.sum() if truth.sum() else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table (prints well in a terminal and pastes into docs/benchmarks.md)."""

    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


@contextmanager
def timer() -> Iterator[list[float]]:
    box: list[float] = []
    t0 = time.perf_counter()
    yield box
    box.append(time.perf_counter() - t0)


def decode_pass(ds: ImageDataset, size: int, threads: int = 1, workers: int = 1) -> AuditContext:
    """What the model-free checks read: ``ds`` decoded once at ``size`` (on ``workers``
    processes), as an audit context whose checks compute on ``threads``."""
    sc = scan(ds.records, size, workers=workers)
    return AuditContext(
        ids=[r.id for r in ds.records],
        given_labels=ds.labels,
        class_names=ds.class_names,
        valid=np.array([f is not None for f in sc.features]),
        load_defects=sc.load_defects,
        image_stats=ImageStats.from_features(sc.features),
        threads=threads,
    )

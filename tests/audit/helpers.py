"""Build audit contexts from real digits and real tables for check tests."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from despina.audit.base import AuditContext
from despina.audit.image_stats import ImageStats, compute_features
from despina.data.decode import as_rgb
from despina.data.sources import digits_arrays
from despina.data.tables import Table, infer_schema


def digits_images(n: int = 300, size: int = 16) -> tuple[list[np.ndarray], np.ndarray]:
    images, y = digits_arrays()
    out = [
        as_rgb(cv2.resize(im, (size, size), interpolation=cv2.INTER_LINEAR)) for im in images[:n]
    ]
    return out, y[:n]


def photo_tiles(size: int = 64) -> list[np.ndarray]:
    """Non-overlapping tiles of four scikit-image photographs, leaving out blank ones."""
    import skimage.data as d

    tiles = []
    for photo in (d.astronaut(), d.coffee(), d.chelsea(), d.rocket()):
        for y0 in range(0, photo.shape[0] - size + 1, size):
            for x0 in range(0, photo.shape[1] - size + 1, size):
                t = np.ascontiguousarray(photo[y0 : y0 + size, x0 : x0 + size])
                if t.std() > 6:
                    tiles.append(t)
    return tiles


def context_for(
    images: list[np.ndarray | None],
    labels: np.ndarray,
    probs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> AuditContext:
    feats = [compute_features(im) if im is not None else None for im in images]
    valid = np.array([f is not None for f in feats], dtype=bool)
    k = int(labels.max()) + 1 if len(labels) else 1
    return AuditContext(
        ids=[f"s{i}" for i in range(len(images))],
        given_labels=[str(v) for v in labels],
        class_names=[str(i) for i in range(k)],
        valid=valid,
        load_defects=[None if v else "corrupt" for v in valid],
        labels=labels[valid],
        pred_probs=probs,
        embeddings=embeddings,
        image_stats=ImageStats.from_features(feats),
    )


def one_hot_probs(y: np.ndarray, k: int, confidence: float = 0.9) -> np.ndarray:
    p = np.full((len(y), k), (1 - confidence) / (k - 1))
    p[np.arange(len(y)), y] = confidence
    return p


def table_context(
    frame: pd.DataFrame,
    target: str | None,
    probs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> AuditContext:
    """A table audit's context over ``frame`` as read from a CSV (cells as text)."""
    raw = frame.astype(object).where(frame.notna(), None)
    raw = raw.map(lambda v: v if v is None else str(v))
    table = Table(raw, infer_schema(raw, target), "test")
    given = table.labels or [""] * len(raw)
    names = sorted({g for g in given if g})
    index = {c: i for i, c in enumerate(names)}
    return AuditContext(
        ids=[str(i) for i in range(len(raw))],
        given_labels=given,
        class_names=names,
        valid=np.ones(len(raw), bool),
        load_defects=[None] * len(raw),
        labels=np.array([index[g] for g in given], np.int64) if target else None,
        pred_probs=probs,
        embeddings=embeddings,
        table=table,
    )

"""Neighbour search at scale: the HNSW graph Despina's checks search above ``EXACT_ROWS``
indexed rows (``despina.core.vectors.neighbor_index``) against exact search, in one run,
on three sets of vectors none of its settings were chosen on:

- Fashion-MNIST's 70,000 images as a CNN's embeddings (cosine; the label, outlier and
  near-duplicate checks' model space), the CNN trained on 10,000 of them for 3 epochs;
- the same images as blurred, centred 16 px thumbnails (cosine; the near-duplicate
  check's candidate search);
- river's Shuttle table, 49,097 rows of 9 standardized features (L2; the table
  near-duplicate check's candidate search).

Every row is a query for its 10 nearest other rows; recall@10 is the share of the exact
10 that the graph returns, with the build and search seconds of each.

    pip install -e '.[bench]' torch==2.13.0
    python benchmarks/neighbors.py [--limit N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

from despina.core.config import ModelConfig, TrainConfig
from despina.core.vectors import neighbor_index, unit_rows
from despina.data.sources import fashion_mnist_arrays
from despina.training.trainer import predict, train_classifier

FASHION = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"
K = 10


def fashion(limit: int | None) -> np.ndarray:
    a, la = fashion_mnist_arrays(FASHION, "train")
    b, lb = fashion_mnist_arrays(FASHION, "test")
    images, labels = np.concatenate([a, b]), np.concatenate([la, lb])
    return images[:limit], labels[:limit]


def embeddings(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    x = (images[:, None].astype(np.float32) / 255 - 0.286) / 0.353
    model = train_classifier(x[:10_000], labels[:10_000], 10, ModelConfig(),
                             TrainConfig(epochs=3), seed=0)  # fmt: skip
    return unit_rows(predict(model, x)[1])


def thumbnails(images: np.ndarray) -> np.ndarray:
    small = np.stack([cv2.GaussianBlur(cv2.resize(im, (16, 16), interpolation=cv2.INTER_AREA),
                                       (3, 3), 0) for im in images]).astype(np.float32)  # fmt: skip
    flat = small.reshape(len(small), -1)
    return unit_rows(flat - flat.mean(axis=1, keepdims=True))


def shuttle() -> np.ndarray:
    from river import datasets

    rows = np.array([list(x.values()) for x, _ in datasets.Shuttle()], np.float32)
    return (rows - rows.mean(axis=0)) / np.maximum(rows.std(axis=0), 1e-6)


def others(idx: np.ndarray) -> np.ndarray:
    """Each row's first K results other than itself."""
    keep = idx != np.arange(len(idx))[:, None]
    return np.stack([r[k][:K] for r, k in zip(idx, keep, strict=True)])


def measure(name: str, v: np.ndarray, metric: str) -> list[object]:
    t0 = time.perf_counter()
    exact_index = neighbor_index(v, metric, exact=len(v))
    _, exact = exact_index.search(v, K + 1)
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = neighbor_index(v, metric, exact=0)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, found = graph.search(v, K + 1)
    t_search = time.perf_counter() - t0
    want, got = others(exact), others(found)
    recall = np.mean([len(set(w) & set(g)) / K for w, g in zip(want, got, strict=True)])
    return [name, f"{len(v):,} × {v.shape[1]}", metric, f"{recall:.4f}", f"{t_exact:.1f}",
            f"{t_build:.1f}", f"{t_search:.1f}"]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="Fashion-MNIST images (all 70,000)")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    images, labels = fashion(args.limit)
    rows = []
    for name, make, metric in (
        ("Fashion-MNIST, CNN embeddings", lambda: embeddings(images, labels), "ip"),
        ("Fashion-MNIST, 16 px thumbnails", lambda: thumbnails(images), "ip"),
        ("Shuttle rows", shuttle, "l2"),
    ):
        rows.append(measure(name, make(), metric))
        print(rows[-1], flush=True)
    print(table(["vectors", "rows × dims", "metric", "recall@10", "exact s", "HNSW build s",
                 "HNSW search s"], rows))  # fmt: skip


if __name__ == "__main__":
    main()

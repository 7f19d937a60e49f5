"""Exact search: ``core.vectors.nearest_rows`` (blocked torch matrix products and top-k)
beside FAISS's flat inner-product index, both on one thread, the near-duplicate check's
candidate search: every row of 16×16 thumbnails (256 dimensions, centred, unit length)
queries its 7 nearest rows.

Data: Fashion-MNIST's first ``--rows`` training images when ``--data`` is given, else
scikit-learn's digits (1,797) resized to 16×16 and repeated with noise to ``--rows``.

    python benchmarks/exact_search.py [--rows 20000] [--data ../shared/data/fashion-mnist]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import table

from despina.audit.checks.pairs import centered
from despina.core.vectors import nearest_rows


def thumbnails(rows: int, data: str | None) -> tuple[np.ndarray, str]:
    if data is not None:
        from despina.data.sources import load_source

        ds = load_source(f"fashion-mnist:{data}?split=train")
        images = [np.asarray(r.array).reshape(28, 28) for r in ds.records[:rows]]
        name = "Fashion-MNIST"
    else:
        from sklearn.datasets import load_digits

        digits = load_digits().images.astype(np.float32)
        rng = np.random.default_rng(0)
        reps = digits[np.arange(rows) % len(digits)]
        images = list(reps + rng.normal(0, 0.5, reps.shape).astype(np.float32))
        name = "digits + noise"
    small = np.stack([cv2.resize(np.float32(i), (16, 16)) for i in images])
    return centered(small), name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    x, name = thumbnails(args.rows, args.data)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    t0 = time.perf_counter()
    _, by_faiss = index.search(x, 7)
    faiss_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    by_torch = nearest_rows(x, x, 7)
    torch_s = time.perf_counter() - t0
    same = float((np.sort(by_faiss, 1) == np.sort(by_torch, 1)).all(axis=1).mean())
    print(f"## Exact search, {name}: {len(x)} rows × {x.shape[1]}, k = 7, one thread\n")
    print(
        table(
            ["search", "seconds", "× FAISS", "rows with the same 7 neighbours"],
            [
                ["FAISS IndexFlatIP", faiss_s, 1.0, 1.0],
                ["nearest_rows (torch)", torch_s, faiss_s / torch_s, same],
            ],
        )
    )


if __name__ == "__main__":
    main()

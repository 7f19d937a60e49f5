"""The audit's map of its samples: each sample's nearest neighbours and a 2-D layout of
the neighbour graph, written as map.csv for the console's sample page and embedding map.

The layout is scikit-learn's t-SNE on the out-of-fold neighbour graph (sparse, precomputed
distances), not on the embeddings themselves: each fold's model embeds in a space of its
own, while the graph links every sample to its nearest training samples in one
consistent sense. UMAP was measured slower here (numba compilation, and it imports
TensorFlow where installed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from despina.audit.base import AuditContext

#: Neighbours kept per sample for its page.
SHOWN_NEIGHBOURS = 8
MAP_FILE = "map.csv"


def layout(sims: np.ndarray, idx: np.ndarray, seed: int) -> np.ndarray:
    """2-D positions in [0, 1] of the rows of a k-nearest-neighbour graph (cosine
    similarities ``sims`` and row indices ``idx``, both (m, k))."""
    from sklearn.manifold import TSNE

    m = len(idx)
    real = sims != 0  # rows with fewer neighbours than k pad with zeros
    k = int(real.sum(axis=1).min()) if m else 0
    if m < 5 or k < 5:
        return np.full((m, 2), 0.5, np.float32)
    # Distances must be positive for a sparse graph to keep them.
    dist = np.clip(1.0 - sims[real], 1e-6, 2.0).astype(np.float64)
    starts = np.concatenate([[0], np.cumsum(real.sum(axis=1))])
    graph = sp.csr_matrix((dist, idx[real], starts), (m, m))
    # t-SNE asks for 3 * perplexity + 1 neighbours of each row, itself not among them.
    tsne = TSNE(2, perplexity=(k - 2) / 3, metric="precomputed", init="random",
                random_state=seed, max_iter=500, n_jobs=1)  # fmt: skip
    xy = tsne.fit_transform(graph)
    span = np.maximum(xy.max(axis=0) - xy.min(axis=0), 1e-9)
    return ((xy - xy.min(axis=0)) / span).astype(np.float32)


def write_map(out: Path, ctx: AuditContext, seed: int, max_rows: int) -> Path | None:
    """Write ``out``/map.csv (id, x, y, neighbours: row numbers of samples.csv, nearest
    first) from the context's neighbour graph; x and y are empty for unreadable samples, or
    for all when more than ``max_rows`` samples were read. None without embeddings."""
    if ctx.embeddings is None or len(ctx.valid_idx) == 0:
        return None
    sims, idx = ctx.neighbors
    rows = ctx.valid_idx
    xy = np.full((ctx.n, 2), np.nan, np.float32)
    if len(rows) <= max_rows:
        xy[rows] = layout(sims, idx, seed)
    nearest = [""] * ctx.n
    shown = rows[idx[:, :SHOWN_NEIGHBOURS]]
    real = sims[:, :SHOWN_NEIGHBOURS] != 0  # a row with fewer neighbours pads with zeros
    for r, near, ok in zip(rows, shown, real, strict=True):
        nearest[r] = " ".join(str(v) for v in near[ok])
    frame = pd.DataFrame({"id": ctx.ids, "x": xy[:, 0].round(4), "y": xy[:, 1].round(4),
                          "neighbours": nearest})  # fmt: skip
    frame.to_csv(out / MAP_FILE, index=False)
    return out / MAP_FILE

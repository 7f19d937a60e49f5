"""The audit's map: a layout of the neighbour graph that keeps neighbours together and
classes apart, and a map.csv that lists each sample's neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from despina.audit.base import AuditContext, knn
from despina.audit.embedding_map import layout, write_map
from despina.core.vectors import unit_rows


def _three_blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    centres = rng.normal(size=(3, 16)) * 4
    return (centres[labels] + rng.normal(size=(n, 16))).astype(np.float32), labels


def test_the_layout_keeps_each_blob_together_and_apart_from_the_others() -> None:
    x, labels = _three_blobs()
    sims, idx = knn(unit_rows(x), 20)
    xy = layout(sims, idx, seed=0)
    assert xy.shape == (300, 2) and xy.min() >= 0 and xy.max() <= 1
    # Each point's nearest point on the map is of its own blob.
    d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(axis=1)] == labels).mean() > 0.97


def test_map_csv_lists_neighbours_and_leaves_unreadable_rows_unplaced(tmp_path: Path) -> None:
    x, labels = _three_blobs(60)
    valid = np.ones(61, bool)
    valid[5] = False  # an unreadable image: no embedding, no place, no neighbours
    ids = [f"s{i}" for i in range(61)]
    ctx = AuditContext(ids=ids, given_labels=[""] * 61, class_names=["a", "b", "c"],
                       valid=valid, load_defects=[None] * 61, labels=labels,
                       embeddings=x)  # fmt: skip
    write_map(tmp_path, ctx, seed=0, max_rows=100)
    m = pd.read_csv(tmp_path / "map.csv", dtype={"neighbours": str})
    assert list(m["id"]) == ids and m.loc[5, ["x", "y"]].isna().all()
    assert pd.isna(m.loc[5, "neighbours"]) and m["x"].notna().sum() == 60
    near = [int(v) for v in m.loc[0, "neighbours"].split()]
    assert len(near) == 8 and 0 not in near and 5 not in near
    # Past max_rows: neighbours still listed, no layout.
    write_map(tmp_path, ctx, seed=0, max_rows=10)
    m = pd.read_csv(tmp_path / "map.csv", dtype={"neighbours": str})
    assert m["x"].isna().all() and m["neighbours"].notna().sum() == 60

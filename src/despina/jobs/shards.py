"""The audit's scan as shards: each partition of an image source decoded once (statistics,
hashes, thumbnails and the resized model input) into an Arrow table, and the tables of all
partitions put back together, in partition order, as the one-task audit's scan result.

A shard carries its rows' ids, so the audit that reads the shards can tell that the source
it lists now is the one that was scanned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from despina.audit.image_stats import STAT_NAMES, THUMB, ImageFeatures
from despina.core.errors import DataError
from despina.data.images import ImageRecord
from despina.jobs.scan import ScanResult, scan


def matrix_column(a: np.ndarray) -> pa.FixedSizeListArray:
    """A 2-D array as a column of fixed-size lists, one row each, in its own dtype."""
    a = np.ascontiguousarray(a)
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), max(1, a.shape[1]))


def column_matrix(table: pa.Table, name: str) -> np.ndarray:
    """A column of fixed-size lists as a 2-D array (rows, list size)."""
    col = table.column(name).combine_chunks()
    return col.flatten().to_numpy().reshape(table.num_rows, col.type.list_size)


def scan_shard(
    records: Sequence[ImageRecord],
    size: int,
    max_pixels: int,
    on_done: Callable[[int], None] | None = None,
) -> pa.Table:
    """Decode ``records`` once into a shard: one row per record, failed ones included."""
    result = scan(records, size, "resize", max_pixels, 1, on_done=on_done)
    n = len(records)
    ok = [f is not None for f in result.features]
    stats = np.zeros((n, len(STAT_NAMES)), np.float64)
    thumbs = np.zeros((n, THUMB * THUMB), np.float32)
    for i, f in enumerate(result.features):
        if f is not None:
            stats[i], thumbs[i] = f.stats, f.thumb.reshape(-1)
    pixels = result.resized.reshape(n, -1)
    return pa.table(
        {
            "id": pa.array([r.id for r in records], pa.string()),
            "size": pa.array([size] * n, pa.int16()),
            "load_defect": pa.array(result.load_defects, pa.string()),
            "reason": pa.array(result.reasons, pa.string()),
            "pixel_hash": pa.array(
                [f.pixel_hash if f is not None else None for f in result.features], pa.string()
            ),
            "stats": matrix_column(stats),
            "thumb": matrix_column(thumbs),
            "pixels": matrix_column(pixels),
            "ok": pa.array(ok, pa.bool_()),
        }
    )


def merge_shards(shards: Sequence[pa.Table]) -> tuple[list[str], ScanResult]:
    """The ids and the scan result of all shards, in the order given; refuses shards that
    resized to different sides (set ``image_size`` in the audit's config)."""
    sizes = sorted({v for shard in shards for v in shard.column("size").to_pylist()})
    if len(sizes) > 1:
        raise DataError(
            f"the partitions chose different image sizes {sizes} for their images; set "
            "image_size in the audit's config so that every partition uses one"
        )
    table = pa.concat_tables(shards)
    n = table.num_rows
    size = sizes[0] if sizes else 1
    stats = column_matrix(table, "stats")
    thumbs = column_matrix(table, "thumb").reshape(n, THUMB, THUMB)
    pixels = column_matrix(table, "pixels")
    ok = table.column("ok").to_pylist()
    hashes = table.column("pixel_hash").to_pylist()
    features: list[ImageFeatures | None] = [
        ImageFeatures(stats[i].copy(), hashes[i], thumbs[i].copy()) if ok[i] else None
        for i in range(n)
    ]
    result = ScanResult(
        features=features,
        load_defects=table.column("load_defect").to_pylist(),
        reasons=[r or "" for r in table.column("reason").to_pylist()],
        resized=pixels.reshape(n, size, size, 3).copy(),
    )
    return table.column("id").to_pylist(), result

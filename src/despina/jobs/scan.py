"""The single decode pass: every image is read once for statistics, hashes and model input."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from despina.audit.image_stats import ImageFeatures, compute_features
from despina.data.decode import decode_image
from despina.data.images import ImageRecord
from despina.preprocessing.image import FitMode, resize_image

PARALLEL_MIN_IMAGES = 4000


@dataclass(frozen=True)
class ScanResult:
    """Per-sample features (None where loading failed), load defects and resized RGB images."""

    features: list[ImageFeatures | None]
    load_defects: list[str | None]
    reasons: list[str]
    resized: np.ndarray  # (n, size, size, 3) uint8; zeros for failed rows


def _scan_chunk(
    records: Sequence[ImageRecord], size: int, fit: FitMode, max_pixels: int
) -> list[tuple[ImageFeatures | None, str | None, str, np.ndarray | None]]:
    import cv2

    cv2.setNumThreads(1)
    out: list[tuple[ImageFeatures | None, str | None, str, np.ndarray | None]] = []
    for rec in records:
        dec = decode_image(rec, max_pixels)
        if dec.image is None:
            out.append((None, dec.defect, dec.reason, None))
            continue
        out.append((compute_features(dec.image), None, "", resize_image(dec.image, size, fit)))
    return out


def scan(
    records: Sequence[ImageRecord],
    size: int,
    fit: FitMode = "resize",
    max_pixels: int = 64_000_000,
    workers: int = 1,
    on_done: Callable[[int], None] | None = None,
    chunk: int = 256,
) -> ScanResult:
    """Decode every record once; ``workers`` > 1 spreads chunks over processes."""
    n = len(records)
    chunks = [records[i : i + chunk] for i in range(0, n, chunk)]
    rows: list[tuple[ImageFeatures | None, str | None, str, np.ndarray | None]] = []
    # Starting a worker process costs seconds (it imports the stack); below a few thousand
    # images one process finishes first (benchmarks/throughput.py).
    if workers <= 1 or n < PARALLEL_MIN_IMAGES:
        for c in chunks:
            rows += _scan_chunk(c, size, fit, max_pixels)
            if on_done:
                on_done(len(c))
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_scan_chunk, c, size, fit, max_pixels) for c in chunks]
            for c, fut in zip(chunks, futures, strict=True):
                rows += fut.result()
                if on_done:
                    on_done(len(c))
    resized = np.zeros((n, size, size, 3), np.uint8)
    for i, r in enumerate(rows):
        if r[3] is not None:
            resized[i] = r[3]
    return ScanResult([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], resized)

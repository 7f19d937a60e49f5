"""Per-image statistics for the defect and duplicate checks, all from one decoded image.

Computed in the single decode pass of an audit (and at serving time for each upload), so
no check decodes an image again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

STAT_NAMES = (
    "width",
    "height",
    "brightness",
    "p05",
    "p95",
    "contrast",
    "detail",
    "sharpness",
    "blur_effect",
    "highlights",
    "color_spread",
)
THUMB = 32
_MAX_SIDE = 512


@dataclass(frozen=True)
class ImageFeatures:
    """What the audit keeps of one image after its decode pass."""

    stats: np.ndarray  # float64, one value per STAT_NAMES entry
    pixel_hash: str
    thumb: np.ndarray  # float32 (THUMB, THUMB) grayscale in [0, 1]


def compute_features(rgb: np.ndarray) -> ImageFeatures:
    """Statistics, exact-pixel hash and a small grayscale thumbnail of an RGB uint8 image."""
    h, w = rgb.shape[:2]
    digest = hashlib.blake2b(rgb.tobytes(), digest_size=16)
    digest.update(f"{h}x{w}".encode())
    work = rgb
    if max(h, w) > _MAX_SIDE:
        s = _MAX_SIDE / max(h, w)
        work = cv2.resize(
            rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
        )
    gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    g = gray.astype(np.float32) / 255.0
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    cdf = np.cumsum(hist) / max(1.0, hist.sum())
    p05 = float(np.searchsorted(cdf, 0.05)) / 255.0
    p95 = float(np.searchsorted(cdf, 0.95)) / 255.0
    contrast = float(g.std())
    # Detail survives light smoothing; sensor noise on a blank image does not.
    smooth = cv2.GaussianBlur(g, (0, 0), sigmaX=max(1.0, min(g.shape) / 64))
    detail = float(smooth.std())
    # Edge steepness: the strongest gradients relative to the intensity range. Blur
    # flattens edges, while darkening or lower contrast scale both terms alike. On digits
    # with injected blur it separates blurred from clean images where the variance of the
    # Laplacian overlaps (see benchmarks/image_defects.py).
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    p01 = float(np.searchsorted(cdf, 0.01)) / 255.0
    p99 = float(np.searchsorted(cdf, 0.99)) / 255.0
    grad99 = float(np.percentile(cv2.magnitude(gx, gy), 99))
    sharpness = float(np.log((grad99 + 1e-4) / (p99 - p01 + 0.02)))
    blur_effect = _blur_effect(gray.astype(np.float32))
    highlights = float(hist[250:].sum() / max(1.0, hist.sum()))
    spread = work.max(axis=2).astype(np.int16) - work.min(axis=2).astype(np.int16)
    color_spread = float(np.percentile(spread, 99))
    stats = np.array(
        [
            w,
            h,
            float(g.mean()),
            p05,
            p95,
            contrast,
            detail,
            sharpness,
            blur_effect,
            highlights,
            color_spread,
        ]
    )
    thumb = cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    return ImageFeatures(stats, digest.hexdigest(), thumb / 255.0)


def _box(x: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Moving average of odd length ``k`` along ``axis`` with reflected borders.

    NumPy rather than cv2.blur: OpenCV's float kernels round differently depending on
    memory alignment, and an audit must give the same numbers for the same image.
    """
    r = k // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r + 1, r)
    c = np.cumsum(np.pad(x, pad, mode="reflect"), axis=axis)
    hi = np.take(c, np.arange(k, c.shape[axis]), axis=axis)
    lo = np.take(c, np.arange(0, c.shape[axis] - k), axis=axis)
    return (hi - lo) / k


def _blur_effect(gray: np.ndarray) -> float:
    """Crete et al.'s no-reference blur effect (SPIE 2007), in [0, 1], 1 = blurriest.

    Re-blurring a sharp image removes much of its gradient; re-blurring a blurred one
    removes little. The filter length scales with the image (3 to 9 pixels).
    """
    k = max(3, min(9, (min(gray.shape) // 8) | 1))
    gray = gray.astype(np.float64)
    effects = []
    for axis in (0, 1):
        blurred = _box(gray, k, axis)
        d_f = np.abs(np.diff(gray, axis=axis))
        d_b = np.abs(np.diff(blurred, axis=axis))
        s_f = float(d_f.sum())
        s_v = float(np.maximum(0.0, d_f - d_b).sum())
        effects.append((s_f - s_v) / max(s_f, 1e-6))
    return max(effects)


@dataclass(frozen=True)
class ImageStats:
    """Statistics of every sample as columns; NaN rows for samples that did not decode."""

    values: np.ndarray  # (n, len(STAT_NAMES))
    pixel_hash: list[str | None]
    thumbs: np.ndarray  # (n, THUMB, THUMB)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, STAT_NAMES.index(name)]

    @classmethod
    def from_features(cls, feats: list[ImageFeatures | None]) -> ImageStats:
        n = len(feats)
        values = np.full((n, len(STAT_NAMES)), np.nan)
        thumbs = np.zeros((n, THUMB, THUMB), np.float32)
        hashes: list[str | None] = [None] * n
        for i, f in enumerate(feats):
            if f is not None:
                values[i], thumbs[i], hashes[i] = f.stats, f.thumb, f.pixel_hash
        return cls(values, hashes, thumbs)

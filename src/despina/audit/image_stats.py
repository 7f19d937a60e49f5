"""Per-image statistics for the defect and duplicate checks, all from one decoded image.

Computed in the single decode pass of an audit (and at serving time for each upload), so
no check decodes an image again.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
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
    "fine_ratio",
    "coarse_ratio",
    "peak_p95",
    "base_p05",
)
THUMB = 32
_MAX_SIDE = 512
_LEVELS = np.arange(256) / 255.0  # grey level of each histogram bin, in [0, 1]
_QUANTILES = np.array([0.01, 0.05, 0.95, 0.99])


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
    stats, gray = _statistics(rgb)
    thumb = cv2.resize(gray, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    return ImageFeatures(stats, digest.hexdigest(), thumb / 255.0)


def image_statistics(rgb: np.ndarray) -> np.ndarray:
    """The STAT_NAMES statistics of an RGB uint8 image, without the hash and thumbnail that
    only the audit's duplicate check reads (a serving request skips them)."""
    return _statistics(rgb)[0]


def _statistics(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The statistics and the grayscale image they were computed on (at most _MAX_SIDE).

    Written for small images too: a serving request computes these for every upload, and
    on a 32 px image each NumPy call costs about as much as its arithmetic, so the
    histogram's order statistics come from one search and scalars stay scalars, with the
    same numbers as a NumPy call per statistic (benchmarks/throughput.py: the audit's
    decode pass ran at 1/21 of bare decode and resize, 1/9.8 after this change).
    """
    h, w = rgb.shape[:2]
    work = rgb
    if max(h, w) > _MAX_SIDE:
        s = _MAX_SIDE / max(h, w)
        work = cv2.resize(
            rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
        )
    gray = cv2.cvtColor(work, cv2.COLOR_RGB2GRAY)
    g = _aligned(gray.shape, np.float32)
    np.multiply(gray, np.float32(1 / 255.0), out=g, dtype=np.float32)
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    # Mean and spread from the histogram: exact, and far cheaper than passes over pixels.
    total = float(max(1, gray.size))  # the histogram's sum
    mean = float(hist @ _LEVELS / total)
    cdf = np.cumsum(hist) / total
    p01, p05, p95, p99 = (np.searchsorted(cdf, _QUANTILES) / 255.0).tolist()
    contrast = math.sqrt(max(0.0, float(hist @ (_LEVELS - mean) ** 2) / total))
    # Detail survives light smoothing; sensor noise on a blank image does not.
    smooth = cv2.GaussianBlur(g, (0, 0), sigmaX=max(1.0, min(g.shape) / 64))
    detail = float(cv2.meanStdDev(smooth)[1][0, 0])
    # Edge steepness: the strongest gradients relative to the intensity range. Blur
    # flattens edges, while darkening or lower contrast scale both terms alike. On digits
    # with injected blur it separates blurred from clean images where the variance of the
    # Laplacian overlaps (see benchmarks/image_defects.py).
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    # NumPy, not cv2.magnitude, whose SIMD and scalar paths round differently and so
    # depend on where OpenCV's buffer happens to start. The square root is monotonic, so
    # it is taken of the two order statistics only, not of every pixel.
    grad99 = _percentile(gx * gx + gy * gy, 99, np.sqrt)
    sharpness = float(np.log((grad99 + 1e-4) / (p99 - p01 + 0.02)))
    highlights = float(hist[250:].sum() / total)
    fine_ratio, coarse_ratio = _band_ratios(g)
    # The blur effect decides blur only where the coarse band is missing (see
    # defect_margins); elsewhere it would cost a sixth of this function for nothing.
    blur_effect = _blur_effect(gray) if math.isnan(coarse_ratio) else math.nan
    r, gr, b = cv2.split(work)
    top, bottom = cv2.max(cv2.max(r, gr), b), cv2.min(cv2.min(r, gr), b)
    color_spread = _uint8_percentile(cv2.subtract(top, bottom), 99)
    # Exposure per channel: a deep blue sky is dark in luminance, yet its blue channel is
    # well exposed; only when even the brightest channel stays low is the image dark.
    peak_p95 = _uint8_percentile(top, 95) / 255.0
    base_p05 = _uint8_percentile(bottom, 5) / 255.0
    stats = np.array(
        [
            w,
            h,
            mean,
            p05,
            p95,
            contrast,
            detail,
            sharpness,
            blur_effect,
            highlights,
            color_spread,
            fine_ratio,
            coarse_ratio,
            peak_p95,
            base_p05,
        ]
    )
    return stats, gray


def _aligned(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """An empty array whose data starts on a 64-byte boundary. OpenCV's SIMD float
    filters round differently depending on alignment; a fixed alignment makes the same
    image give the same statistics in every run."""
    # math.prod and the array interface: np.prod and .ctypes cost more per call than the
    # arithmetic on a serving request's small image.
    size = math.prod(shape) * np.dtype(dtype).itemsize
    raw = np.empty(size + 64, np.uint8)
    offset = (-raw.__array_interface__["data"][0]) % 64
    return raw[offset : offset + size].view(dtype).reshape(shape)


def _percentile(
    values: np.ndarray, q: float, transform: Callable[[np.ndarray], np.ndarray] | None = None
) -> float:
    """``np.percentile(transform(values), q)`` (linear interpolation) by partial sorting:
    the same number, several times faster on the small arrays of a serving request.
    ``transform`` must be monotonic increasing; it is applied to two values only."""
    flat = values.ravel()
    pos = q / 100 * (flat.size - 1)
    lo = int(pos)
    hi = min(lo + 1, flat.size - 1)
    part = np.partition(flat, (lo, hi))
    if transform is None:
        a, b = float(part[lo]), float(part[hi])
    else:  # on NumPy scalars, so the result keeps the values' precision
        a, b = float(transform(part[lo])), float(transform(part[hi]))
    return a + (b - a) * (pos - lo)


def _band_ratios(g: np.ndarray) -> tuple[float, float]:
    """The shape of the spectrum's top, not its level: log energy of the finest detail
    (under about half a pixel) over the next band (half a pixel to one), and of that band
    over a coarse one (two to four pixels).

    Blur removes detail from the finest scale down to its own, whatever the picture: mild
    blur empties the first ratio, stronger blur the second. A naturally smooth image
    (out-of-focus background, sky) keeps its sensor noise at every scale and is not taken
    for a blurred one, which is where edge- and Laplacian-based measures fail on photos
    (benchmarks/image_defects.py, docs/benchmarks.md).
    """
    s05 = cv2.GaussianBlur(g, (0, 0), 0.5)
    s1 = cv2.GaussianBlur(g, (0, 0), 1.0)
    eps = 1.5e-7 * g.size  # about the rounding noise of 8-bit pixels, in [0, 1] units
    finest = cv2.norm(g, s05, cv2.NORM_L2SQR) + eps
    middle = cv2.norm(s05, s1, cv2.NORM_L2SQR) + eps
    if min(g.shape) < 32:  # a 2-4 px band needs room: on 16 px digits it is the whole image
        return float(np.log(finest / middle)), float("nan")
    # The coarse band at half resolution, a quarter of the pixels: pyrDown's kernel (sigma ~1.1) on
    # sigma 1 is sigma ~1.5, and 0.67 and 1.73 half-size pixels more make sigma 2 and 4.
    half = cv2.pyrDown(s1)
    s2 = cv2.GaussianBlur(half, (0, 0), 0.667)
    s4 = cv2.GaussianBlur(s2, (0, 0), 1.732)
    coarse = cv2.norm(s2, s4, cv2.NORM_L2SQR) * (g.size / s2.size) + eps
    return float(np.log(finest / middle)), float(np.log(middle / coarse))


def _uint8_percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile`` (linear interpolation) of uint8 values from their histogram: the
    same number, without sorting."""
    counts = np.cumsum(np.bincount(values.ravel(), minlength=256))
    n = values.size
    pos = q / 100 * (n - 1)
    lo = int(pos)
    a, b = np.searchsorted(counts, (lo, min(lo + 1, n - 1)), side="right").tolist()
    return a + (b - a) * (pos - lo)


def _blur_effect(gray: np.ndarray) -> float:
    """Crete et al.'s no-reference blur effect (SPIE 2007), in [0, 1], 1 = blurriest.

    Re-blurring a sharp image removes much of its gradient; re-blurring a blurred one
    removes little. The filter length scales with the image (3 to 9 pixels). OpenCV's
    filters on a 64-byte-aligned copy: faster than NumPy cumulative sums on small tiles,
    and the same image gives the same number in every run (its SIMD rounding
    depends only on alignment and shape).
    """
    k = max(3, min(9, (min(gray.shape) // 8) | 1))
    g = _aligned(gray.shape, np.float32)
    g[...] = gray
    effects = []
    for vertical in (True, False):
        blurred = cv2.blur(g, (1, k) if vertical else (k, 1))
        if vertical:
            d_f, d_b = cv2.absdiff(g[1:], g[:-1]), cv2.absdiff(blurred[1:], blurred[:-1])
        else:
            d_f = cv2.absdiff(g[:, 1:], g[:, :-1])
            d_b = cv2.absdiff(blurred[:, 1:], blurred[:, :-1])
        s_f = float(cv2.sumElems(d_f)[0])
        diff = cv2.subtract(d_f, d_b)  # the positive part's sum: (sum + L1 norm) / 2
        s_v = 0.5 * (float(cv2.sumElems(diff)[0]) + float(cv2.norm(diff, cv2.NORM_L1)))
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

"""How alike two thumbnails are: perceptual hashes, and normalized cross-correlation
maximized over shifts, half-pixel shifts, slight zooms and a continuous affine alignment,
measured for many pairs at once (the near-duplicate check's measurements)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

import cv2
import numpy as np


def phash_bits(thumbs: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes of (n, 32, 32) thumbnails, one uint64 each (bit k: DCT
    coefficient k over the median); :func:`hash_distance` counts the bits two differ in."""
    low = np.zeros((len(thumbs), 64), dtype=np.float32)
    for i, t in enumerate(thumbs):
        low[i] = cv2.dct(np.ascontiguousarray(t, dtype=np.float32))[:8, :8].ravel()
    # One median over all rows: a call per row cost more than its DCT.
    bits = low > np.median(low[:, 1:], axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(np.uint64).ravel()


def hash_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many bits each pair of :func:`phash_bits` hashes differ in."""
    return np.bitwise_count(a ^ b)


def centered(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` flattened, centred and scaled to unit length, as a new float32 array
    (worked in place: one copy of ``x`` at a time)."""
    x = x.reshape(len(x), -1).astype(np.float32)
    x -= x.mean(axis=1, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    return x


def each(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """``fn`` of every image of ``images`` (each result the shape and type of its image), into one
    array made first: stacking a list of small arrays holds every image twice and leaves
    the C heap fragmented."""
    out = np.empty_like(images)
    for i, im in enumerate(images):
        out[i] = fn(im)
    return out


def shifted_ncc(a: np.ndarray, b: np.ndarray, max_shift: int = 2) -> np.ndarray:
    """Max over shifts (|dx|, |dy| <= max_shift) of the NCC of paired thumbnails (p, H, W).

    The central window of ``b`` slides over ``a`` with OpenCV's ``matchTemplate``
    (``TM_CCOEFF_NORMED``: both windows centred and normalized, a constant window scores
    0). Faster than the same sums as NumPy einsums over sliding-window views, with the
    same numbers to 1e-5 (docs/benchmarks.md, near-duplicates).
    """
    m = max_shift
    h, w = a.shape[1:]
    a32 = np.ascontiguousarray(a, dtype=np.float32)
    b32 = np.ascontiguousarray(b[:, m : h - m, m : w - m], dtype=np.float32)
    best = np.empty(len(a32), dtype=np.float32)
    for i in range(len(a32)):
        best[i] = cv2.matchTemplate(a32[i], b32[i], cv2.TM_CCOEFF_NORMED).max()
    return best


def zoom(t: np.ndarray, crop: int = 1) -> np.ndarray:
    """Each thumbnail with ``crop`` pixels cut from every side and scaled back: a slight zoom."""
    h, w = t.shape[1:]
    return each(
        lambda x: cv2.resize(x[crop:-crop, crop:-crop], (w, h), interpolation=cv2.INTER_LINEAR), t
    )


def aligned_ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shift-tolerant NCC, also over half-pixel shifts and a slight zoom either way.

    Finds copies that were shifted by a fraction of a pixel, cropped by a few percent or
    resized: the plain integer-shift search misses those by a few thousandths, which is
    all that separates copies from distinct-but-similar images.
    """
    return np.maximum(shifted_ncc(a, b), subpixel_ncc(a, b))


def subpixel_ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """What :func:`aligned_ncc` adds to :func:`shifted_ncc`: the best over half-pixel
    shifts and a slight zoom either way (for pairs whose shifted NCC is known)."""
    half_x = 0.5 * (a + np.roll(a, 1, axis=2))
    half_y = 0.5 * (a + np.roll(a, 1, axis=1))
    best = shifted_ncc(half_x, b)
    for variant_a, variant_b in (
        (half_y, b),
        (0.5 * (half_x + np.roll(half_x, 1, axis=1)), b),
        (zoom(a), b),
        (a, zoom(b)),
    ):
        best = np.maximum(best, shifted_ncc(variant_a, variant_b))
    return best


def affine_ncc(a: np.ndarray, b: np.ndarray, margin: int = 2) -> float:
    """NCC of two thumbnails after aligning ``a`` onto ``b`` by an affine map (OpenCV's ECC,
    Evangelidis and Psarakis 2008), over the window ``margin`` pixels in from the edges;
    -1 when the alignment does not converge.

    A crop of a few percent on each side, resized back, is a zoom that differs per axis
    and is off-centre by a fraction of a pixel; the grid of shifts and zooms in
    :func:`aligned_ncc` leaves such copies below look-alikes of digits and garments, the
    continuous fit does not. Too slow for every candidate, it is run on undecided pairs.
    """
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4)
    try:
        # gaussFiltSize 1: the thumbnails are smoothed already (OpenCV's stubs lack it).
        _, warp = cv2.findTransformECC(b, a, warp, cv2.MOTION_AFFINE, criteria, None, 1)  # type: ignore[call-overload]
    except cv2.error:
        return -1.0
    flags = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    moved = cv2.warpAffine(a, warp, a.shape[::-1], flags=flags, borderMode=cv2.BORDER_REPLICATE)
    x = moved[margin:-margin, margin:-margin].ravel()
    y = b[margin:-margin, margin:-margin].ravel()
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / max(float(np.linalg.norm(x) * np.linalg.norm(y)), 1e-9))


#: Pairs measured at once: their thumbnails, and their shifted and zoomed variants, are
#: copied per pair, so the check's memory stays bounded whatever the number of images.
PAIR_CHUNK = 1024


def paired(
    measure: Callable[[np.ndarray, np.ndarray], np.ndarray],
    thumbs: np.ndarray,
    pairs: np.ndarray,
    pool: Executor,
) -> np.ndarray:
    """``measure`` of each pair (a, b) of ``thumbs``, :data:`PAIR_CHUNK` pairs at a time,
    the chunks spread over ``pool`` (OpenCV releases the interpreter lock while it works)."""
    chunks = np.array_split(pairs, max(1, -(-len(pairs) // PAIR_CHUNK)))
    return np.concatenate(
        list(pool.map(lambda c: measure(thumbs[c[:, 0]], thumbs[c[:, 1]]), chunks))
    )


def affine_each(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`affine_ncc` of each pair of thumbnails (p, H, W)."""
    return np.array([affine_ncc(x, y) for x, y in zip(a, b, strict=True)], np.float32)

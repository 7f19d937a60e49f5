"""Exact and near-duplicates, grouped into duplicate sets.

Exact duplicates share a hash of their decoded pixels. Near-duplicate candidates are the
nearest neighbours of each image in two spaces: small blurred thumbnails, queried as they
are and shifted or zoomed by a pixel (a shifted or cropped copy is not always among the
nearest of an unshifted query when the data has many look-alikes), and CNN embeddings
when an audit has them. A candidate pair needs a perceptual hash (pHash, Zauner 2010) that
roughly agrees, and then either a very high normalized cross-correlation of the
thumbnails, maximized over shifts, half-pixel shifts and slight zooms, or, like Lowe's
ratio test for feature matches, a correlation whose distance from 1 is a small fraction
of the distance to either image's best other match. The ratio is what carries over from
one dataset to another: distinct handwritten digits can correlate more closely than a
noisy copy of a low-contrast photo does with its original, so no fixed bound serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult, knn
from despina.core.vectors import neighbor_index, unit_rows


def phash_bits(thumbs: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes (as bool arrays) of (n, 32, 32) thumbnails."""
    low = np.zeros((len(thumbs), 64), dtype=np.float32)
    for i, t in enumerate(thumbs):
        low[i] = cv2.dct(np.ascontiguousarray(t, dtype=np.float32))[:8, :8].ravel()
    # One median over all rows: a call per row cost more than its DCT.
    return low > np.median(low[:, 1:], axis=1, keepdims=True)


def _centered(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1).astype(np.float32)
    x = x - x.mean(axis=1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)


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


def _zoom(t: np.ndarray, crop: int = 1) -> np.ndarray:
    """Each thumbnail with ``crop`` pixels cut from every side and scaled back: a slight zoom."""
    h, w = t.shape[1:]
    return np.stack(
        [cv2.resize(x[crop:-crop, crop:-crop], (w, h), interpolation=cv2.INTER_LINEAR) for x in t]
    )


def aligned_ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shift-tolerant NCC, also over half-pixel shifts and a slight zoom either way.

    Finds copies that were shifted by a fraction of a pixel, cropped by a few percent or
    resized: the plain integer-shift search misses those by a few thousandths, which is
    all that separates copies from distinct-but-similar images.
    """
    best = shifted_ncc(a, b)
    half_x = 0.5 * (a + np.roll(a, 1, axis=2))
    half_y = 0.5 * (a + np.roll(a, 1, axis=1))
    for variant_a, variant_b in (
        (half_x, b),
        (half_y, b),
        (0.5 * (half_x + np.roll(half_x, 1, axis=1)), b),
        (_zoom(a), b),
        (a, _zoom(b)),
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


def _candidates(thumbs: np.ndarray, k: int) -> set[tuple[int, int]]:
    """Candidate pairs (i < j): each blurred 16 px thumbnail's k nearest, queried as it is,
    shifted a pixel each way and zoomed by a pixel."""
    m = len(thumbs)
    half = thumbs.shape[1] // 2
    small = thumbs.reshape(m, half, 2, half, 2).mean(axis=(2, 4))
    small = np.stack([cv2.GaussianBlur(t, (3, 3), 0) for t in small])
    index = neighbor_index(_centered(small))
    pairs: set[tuple[int, int]] = set()
    k = min(k + 1, m)
    for query in (
        small,
        np.roll(small, 1, axis=1),
        np.roll(small, -1, axis=1),
        np.roll(small, 1, axis=2),
        np.roll(small, -1, axis=2),
        _zoom(small),
    ):
        _, found = index.search(_centered(query), k)
        rows = np.repeat(np.arange(m), k)
        cols = found.ravel()
        ok = (cols >= 0) & (cols != rows)
        lo, hi = np.minimum(rows[ok], cols[ok]), np.maximum(rows[ok], cols[ok])
        pairs.update(zip(lo.tolist(), hi.tolist(), strict=True))
    return pairs


#: Pairs measured at once: their thumbnails, and their shifted and zoomed variants, are
#: copied per pair, so the check's memory stays bounded whatever the number of images.
PAIR_CHUNK = 8192


def _paired(
    measure: Callable[[np.ndarray, np.ndarray], np.ndarray], thumbs: np.ndarray, pairs: np.ndarray
) -> np.ndarray:
    """``measure`` of each pair (a, b) of ``thumbs``, :data:`PAIR_CHUNK` pairs at a time."""
    return np.concatenate([
        measure(thumbs[chunk[:, 0]], thumbs[chunk[:, 1]])
        for chunk in np.array_split(pairs, max(1, -(-len(pairs) // PAIR_CHUNK)))
    ])  # fmt: skip


def _rival(
    x: int, partner: int, ranked: dict[int, list[tuple[float, int]]], uf: _UnionFind
) -> tuple[float, int]:
    """The best NCC of ``x`` with an image in neither its set nor its partner's, and that
    image ((-1, -1) if none was measured): a copy's own other copies are not its rivals."""
    groups = {uf.find(x), uf.find(partner)}
    for value, other in ranked.get(x, ()):
        if uf.find(other) not in groups:
            return value, other
    return -1.0, -1


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


@dataclass(frozen=True)
class DuplicateRules:
    """The near-duplicate check's bounds. The ratio and the affine bound were set on
    scikit-learn's digits (the closest distinct look-alikes); the floor, tone and coarse
    guards after looking at Fashion-MNIST's and photo tiles' false pairs.
    benchmarks/duplicates.py says which dataset was used for what, and adds one that
    was never looked at."""

    strong: float = 0.996  # an aligned NCC that confirms a pair by itself
    hash_bits: int = 26  # most pHash bits (of 64) two images may differ in to be compared
    candidates: int = 6  # nearest thumbnails per query
    floor: float = 0.95  # the least NCC the ratio test accepts
    ratio: float = 0.35  # a pair's distance from 1, at most this share of its rivals'
    tone: float = 1.25  # the most two copies' mean or contrast may differ by, as a factor
    coarse: float = 0.98  # the least NCC once the thumbnails are blurred further
    affine_floor: float = 0.97  # undecided pairs from here up get the continuous alignment
    affine: float = 0.999  # the NCC it must then reach
    min_contrast: float = 1 / 255  # flatter thumbnails can only be exact copies


def _near_duplicates(
    thumbs: np.ndarray,
    embeddings: np.ndarray | None,
    uf: _UnionFind,
    rules: DuplicateRules = DuplicateRules(),
) -> np.ndarray:
    """Join near-duplicates of (m, 32, 32) thumbnails in ``uf`` (whose sets may already hold
    exact copies); return each image's best aligned NCC with any candidate (-1 if none)."""
    m = len(thumbs)
    best = np.full(m, -1.0, dtype=np.float32)
    pairs = _candidates(thumbs, rules.candidates)
    if embeddings is not None and len(embeddings) == m:
        _, ecand = knn(unit_rows(embeddings), min(rules.candidates, 5))
        pairs |= {(min(a, int(b)), max(a, int(b))) for a in range(m) for b in ecand[a]}
    pixels = thumbs.reshape(m, -1)
    flat = pixels.std(axis=1) < rules.min_contrast  # no content to correlate
    arr = np.array(
        sorted(p for p in pairs if p[0] != p[1] and not (flat[p[0]] or flat[p[1]])),
        dtype=np.int64,
    ).reshape(-1, 2)
    bits = phash_bits(thumbs)
    # Light smoothing absorbs resampling and re-encoding differences between copies.
    soft = np.stack([cv2.GaussianBlur(t, (0, 0), 0.7) for t in thumbs])
    ham = (bits[arr[:, 0]] != bits[arr[:, 1]]).sum(axis=1)
    ncc = np.full(len(arr), -1.0, dtype=np.float32)
    near = ham <= rules.hash_bits  # only these can be confirmed, so only they are measured
    if near.any():
        ncc[near] = _paired(shifted_ncc, soft, arr[near])
    # The finer alignment where it can matter: a pair of its own, or a rival close enough
    # to block one at the floor.
    close = ncc >= 1.0 - (1.0 - rules.floor) / rules.ratio
    if close.any():
        ncc[close] = _paired(aligned_ncc, soft, arr[close])
    np.maximum.at(best, arr[:, 0], ncc)
    np.maximum.at(best, arr[:, 1], ncc)
    strong = ncc >= rules.strong
    for a, b in arr[strong].tolist():
        uf.union(a, b)
    # The ratio test for the rest: each image's measured matches, best first, to find its
    # best match outside the two sets.
    ranked: dict[int, list[tuple[float, int]]] = {}
    for (a, b), v in zip(arr[close].tolist(), ncc[close].tolist(), strict=True):
        ranked.setdefault(a, []).append((v, b))
        ranked.setdefault(b, []).append((v, a))
    for lst in ranked.values():
        lst.sort(reverse=True)
    # Correlation ignores gain and offset; a copy keeps its overall tone, which distinct
    # images with a similar layout rarely do.
    tone = np.log(np.maximum(np.stack([pixels.mean(axis=1), pixels.std(axis=1)], 1), 1e-3))
    same_tone = (np.abs(tone[arr[:, 0]] - tone[arr[:, 1]]) <= np.log(rules.tone)).all(axis=1)
    weak = (ncc >= rules.floor) & ~strong & same_tone
    coarse = np.stack([cv2.GaussianBlur(t, (0, 0), 1.3) for t in soft])
    for (a, b), v in zip(arr[weak].tolist(), ncc[weak].tolist(), strict=True):
        if uf.find(a) == uf.find(b):
            continue
        rivals = (_rival(a, b, ranked, uf), _rival(b, a, ranked, uf))
        if 1.0 - v > rules.ratio * (1.0 - max(r for r, _ in rivals)):
            # Undecided: a close pair is aligned continuously; if it then matches almost
            # exactly, the ratio test again, each rival aligned alike.
            if v < rules.affine_floor:
                continue
            v = max(v, affine_ncc(soft[a], soft[b]))
            if v < rules.affine:
                continue
            rival = max(
                max(r, affine_ncc(soft[x], soft[o])) if o >= 0 else r
                for x, (r, o) in zip((a, b), rivals, strict=True)
            )
            if 1.0 - v > rules.ratio * (1.0 - rival):
                continue
        # A copy's differences are fine grain (noise, re-encoding, resampling): blurred
        # away, it matches almost exactly; a look-alike's differences stay.
        if aligned_ncc(coarse[[a]], coarse[[b]])[0] < rules.coarse:
            continue
        uf.union(a, b)
    return best


class DuplicateCheck(Check):
    name: ClassVar[str] = "duplicate"
    description: ClassVar[str] = "exact copies and near-copies (shifted, resized, re-encoded)"
    requires: ClassVar[frozenset[str]] = frozenset({"image_stats"})

    def __init__(self, rules: DuplicateRules = DuplicateRules()) -> None:
        self.rules = rules

    def run(self, ctx: AuditContext) -> CheckResult:
        stats = ctx.image_stats
        assert stats is not None  # ensured by requires
        vidx = ctx.valid_idx
        m = len(vidx)
        uf = _UnionFind(m)  # over the readable rows
        first: dict[str, int] = {}
        exact: list[int] = []  # rows with an identical copy
        for k, i in enumerate(vidx):
            h = stats.pixel_hash[i]
            if h is not None and h in first:
                uf.union(first[h], k)
                exact += [int(vidx[first[h]]), int(i)]
            elif h is not None:
                first[h] = k
        best = np.zeros(ctx.n, dtype=np.float32)
        if m >= 2:
            best[vidx] = _near_duplicates(stats.thumbs[vidx], ctx.embeddings, uf, self.rules)
        members: dict[int, list[int]] = {}
        for k, i in enumerate(vidx):
            members.setdefault(uf.find(k), []).append(int(i))
        groups = sorted((sorted(g) for g in members.values() if len(g) > 1), key=lambda g: g[0])
        group_of = np.full(ctx.n, -1, dtype=np.int64)
        flags = np.zeros(ctx.n, dtype=bool)
        area = stats.column("width") * stats.column("height")
        for gid, g in enumerate(groups):
            keep = max(g, key=lambda i: (area[i], -i))  # keep the largest, then the first
            for i in g:
                group_of[i] = gid
                flags[i] = i != keep
        # A row in a set scores as a confirmed copy at least, an exact copy as identical.
        best[group_of >= 0] = np.maximum(best[group_of >= 0], self.rules.strong)
        best[exact] = 1.0
        scores = np.clip(0.5 * (1.0 - best) / (1.0 - self.rules.strong), 0.0, 1.0)
        scores[~ctx.valid] = 1.0
        return CheckResult(
            name=self.name,
            scores=scores.astype(np.float64),
            flags=flags,
            score=float(1.0 - flags.mean()) if ctx.n else 1.0,
            details={"groups": groups, "group_of": group_of, "exact_pairs": len(exact) // 2},
        )

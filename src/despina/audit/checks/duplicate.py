"""Exact and near-duplicates, grouped into duplicate sets.

Exact duplicates share a hash of their decoded pixels. Near-duplicate candidates are the
nearest neighbours of each image in two spaces (CNN embeddings, and small blurred
thumbnails, which catch copies a model might embed differently); a candidate pair is
confirmed only when a perceptual hash (pHash, Zauner 2010) agrees *and* the normalized
cross-correlation of the thumbnails, maximized over shifts of up to two pixels, is high.
The shift search is what finds translated copies that hash- and embedding-only methods miss.
"""

from __future__ import annotations

from typing import ClassVar

import cv2
import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult, knn


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


def _rival_ncc(pairs: np.ndarray, ncc: np.ndarray, m: int) -> np.ndarray:
    """For each candidate pair (a, b), the highest NCC that a or b reaches with any image
    other than its partner (-1 when none was measured)."""
    node = np.concatenate([pairs[:, 0], pairs[:, 1]])
    other = np.concatenate([pairs[:, 1], pairs[:, 0]])
    value = np.concatenate([ncc, ncc]).astype(np.float64)
    order = np.lexsort((-value, node))  # by node, best first
    node, other, value = node[order], other[order], value[order]
    first = np.ones(len(node), dtype=bool)
    first[1:] = node[1:] != node[:-1]
    best = np.full(m, -1.0)
    best_with = np.full(m, -1, dtype=np.int64)
    best[node[first]], best_with[node[first]] = value[first], other[first]
    second_at = np.flatnonzero(first) + 1
    second_at = second_at[(second_at < len(node))]
    second_at = second_at[node[second_at] == node[second_at - 1]]
    second = np.full(m, -1.0)
    second[node[second_at]] = value[second_at]

    def other_than(x: np.ndarray, partner: np.ndarray) -> np.ndarray:
        return np.where(best_with[x] == partner, second[x], best[x])

    a, b = pairs[:, 0], pairs[:, 1]
    return np.maximum(other_than(a, b), other_than(b, a))


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


class DuplicateCheck(Check):
    name: ClassVar[str] = "duplicate"
    description: ClassVar[str] = "exact copies and near-copies (shifted, resized, re-encoded)"
    requires: ClassVar[frozenset[str]] = frozenset({"image_stats"})

    def __init__(
        self,
        ncc_threshold: float = 0.996,
        hash_threshold: int = 26,
        candidates: int = 8,
        distinct_floor: float = 0.9,
        distinct_ratio: float = 0.2,
    ) -> None:
        self.ncc_threshold = ncc_threshold
        self.hash_threshold = hash_threshold
        self.candidates = candidates
        self.distinct_floor = distinct_floor
        self.distinct_ratio = distinct_ratio

    def run(self, ctx: AuditContext) -> CheckResult:
        stats = ctx.image_stats
        assert stats is not None  # ensured by requires
        vidx = ctx.valid_idx
        m = len(vidx)
        uf = _UnionFind(ctx.n)
        kinds: dict[tuple[int, int], str] = {}
        by_hash: dict[str, int] = {}
        for i in vidx:
            h = stats.pixel_hash[i]
            if h is None:
                continue
            if h in by_hash:
                uf.union(by_hash[h], int(i))
                kinds[(by_hash[h], int(i))] = "exact"
            else:
                by_hash[h] = int(i)
        best = np.zeros(ctx.n, dtype=np.float32)
        for a, b in kinds:
            best[a] = best[b] = 1.0
        if m >= 2:
            thumbs = stats.thumbs[vidx]
            half = thumbs.shape[1] // 2
            small = thumbs.reshape(m, half, 2, half, 2).mean(axis=(2, 4))
            small = np.stack([cv2.GaussianBlur(t, (3, 3), 0) for t in small])
            _, cand = knn(_centered(small), self.candidates)
            pairs = {(min(a, int(b)), max(a, int(b))) for a in range(m) for b in cand[a]}
            if ctx.embeddings is not None and len(ctx.embeddings) == m:
                _, ecand = knn(ctx.unit_embeddings, min(self.candidates, 5))
                pairs |= {(min(a, int(b)), max(a, int(b))) for a in range(m) for b in ecand[a]}
            arr = np.array(sorted(p for p in pairs if p[0] != p[1]), dtype=np.int64).reshape(-1, 2)
            bits = phash_bits(thumbs)
            # Light smoothing absorbs resampling and re-encoding differences between copies.
            soft = np.stack([cv2.GaussianBlur(t, (0, 0), 0.7) for t in thumbs])
            ham = (bits[arr[:, 0]] != bits[arr[:, 1]]).sum(axis=1)
            ncc = np.full(len(arr), -1.0, dtype=np.float32)
            # Only pairs whose hashes agree can be confirmed, so only they get the shift
            # search (a third of the candidates on benchmarks/image_defects.py's photos).
            near = ham <= self.hash_threshold
            if near.any():
                ncc[near] = shifted_ncc(soft[arr[near, 0]], soft[arr[near, 1]])
            close = ncc >= self.ncc_threshold - 0.03  # only these get the finer alignment
            if close.any():
                ncc[close] = aligned_ncc(soft[arr[close, 0]], soft[arr[close, 1]])
            for (a, b), s in zip(arr, ncc, strict=True):
                ga, gb = int(vidx[a]), int(vidx[b])
                best[ga], best[gb] = max(best[ga], s), max(best[gb], s)
            confirmed = (ncc >= self.ncc_threshold) & (ham <= self.hash_threshold)
            # A lower correlation also confirms a pair whose hashes agree closely when
            # neither image comes anywhere near a third one: photos of fine texture lose
            # more to half-pixel resampling in the thumbnails than 0.996 allows, while
            # distinct look-alikes (handwritten 1s) always have other look-alikes.
            rival = _rival_ncc(arr, ncc, m)
            alone = (1.0 - ncc) <= self.distinct_ratio * (1.0 - rival)
            close_hash = ham <= self.hash_threshold // 2
            confirmed |= (ncc >= self.distinct_floor) & close_hash & alone
            for a, b in arr[confirmed]:
                ga, gb = int(vidx[a]), int(vidx[b])
                uf.union(ga, gb)
                kinds.setdefault((ga, gb), "near")
        members: dict[int, list[int]] = {}
        for i in vidx:
            members.setdefault(uf.find(int(i)), []).append(int(i))
        groups = [sorted(g) for g in members.values() if len(g) > 1]
        groups.sort(key=lambda g: g[0])
        group_of = np.full(ctx.n, -1, dtype=np.int64)
        flags = np.zeros(ctx.n, dtype=bool)
        area = stats.column("width") * stats.column("height")
        for gid, g in enumerate(groups):
            keep = max(g, key=lambda i: (area[i], -i))  # keep the largest, then the first
            for i in g:
                group_of[i] = gid
                flags[i] = i != keep
        scores = np.clip(0.5 * (1.0 - best) / (1.0 - self.ncc_threshold), 0.0, 1.0)
        scores[~ctx.valid] = 1.0
        return CheckResult(
            name=self.name,
            scores=scores.astype(np.float64),
            flags=flags,
            score=float(1.0 - flags.mean()) if ctx.n else 1.0,
            details={
                "groups": groups,
                "group_of": group_of,
                "exact_pairs": sum(v == "exact" for v in kinds.values()),
            },
        )

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
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np

from despina.audit.base import AuditContext, Check, CheckResult, knn
from despina.audit.checks.pairs import (
    affine_each,
    affine_ncc,
    aligned_ncc,
    centered,
    each,
    hash_distance,
    paired,
    phash_bits,
    shifted_ncc,
    subpixel_ncc,
    zoom,
)
from despina.core.vectors import (
    QUERY_BLOCK,
    ExactSearch,
    neighbor_index,
    searched_exactly,
    torch_threads,
    unit_rows,
)


def pair_rows(rows: np.ndarray, cols: np.ndarray, m: int) -> np.ndarray:
    """The distinct pairs (i < j) among (``rows``, ``cols``) of ``m`` items as an (p, 2)
    array sorted by i, then j (a sorted array, not a set of tuples: a tenth of the memory);
    pairs of an item with itself and misses (-1) left out."""
    ok = (cols >= 0) & (cols != rows)
    lo, hi = np.minimum(rows[ok], cols[ok]), np.maximum(rows[ok], cols[ok])
    codes = np.unique(lo.astype(np.int64) * m + hi)
    return np.stack([codes // m, codes % m], axis=1)


#: The (pixels, axis) a thumbnail is rolled by for the shifted candidate queries.
SHIFTS = ((1, 1), (-1, 1), (1, 2), (-1, 2))


#: Query thumbnails made and searched at once by each candidate search (a multiple of
#: the exact search's block, so its blocks and their results are the same as in one go).
QUERY_ROWS = 16 * QUERY_BLOCK


def _query(small: np.ndarray, j: int) -> np.ndarray:
    """Candidate query ``j`` (from 1) of 16 px thumbnails: shifted a pixel, or zoomed."""
    if j <= len(SHIFTS):
        return np.roll(small, SHIFTS[j - 1][0], axis=SHIFTS[j - 1][1])
    return zoom(small)


def _candidates(thumbs: np.ndarray, k: int, pool: Executor) -> tuple[np.ndarray, np.ndarray]:
    """Each blurred 16 px thumbnail's k nearest, queried as it is, shifted a pixel each way
    and zoomed by a pixel, as (rows, neighbours) for :func:`pair_rows`; the six searches
    spread over ``pool``, each on one thread, so its result does not depend on how many
    run beside it."""
    m = len(thumbs)
    half = thumbs.shape[1] // 2
    small = thumbs.reshape(m, half, 2, half, 2).mean(axis=(2, 4))
    small = each(lambda t: cv2.GaussianBlur(t, (3, 3), 0), small)
    base = centered(small)
    index: Any = None if searched_exactly(m) else neighbor_index(base)  # exact, or the graph
    k = min(k + 1, m)

    def search(j: int) -> np.ndarray:
        find: Callable[[np.ndarray], np.ndarray]
        if index is None:
            find = ExactSearch(base, k)
        else:
            import faiss

            faiss.omp_set_num_threads(1)  # a new thread starts with OpenMP's default

            def find(query: np.ndarray) -> np.ndarray:
                return index.search(query, k)[1]

        # Queries made a block at a time: each search holds one block, not a query set;
        # query 0 is the thumbnails as they are, centred already in ``base``.
        found = np.empty((m, k), dtype=np.int64)
        for lo in range(0, m, QUERY_ROWS):
            hi = min(lo + QUERY_ROWS, m)
            found[lo:hi] = find(base[lo:hi] if j == 0 else centered(_query(small[lo:hi], j)))
        return found

    queries = range(len(SHIFTS) + 2)  # as it is, shifted, zoomed
    with torch_threads(1):
        found = np.concatenate([f.ravel() for f in pool.map(search, queries)])
    return np.tile(np.repeat(np.arange(m), k), len(queries)), found


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
class _Ranked:
    """Each image's close matches, best first (ties: the higher index first), as one
    sorted array of (image, match, NCC) rows with each image's first row: a list of
    Python tuples per image held ten times the memory."""

    start: np.ndarray  # (m + 1,) where each image's matches begin
    match: np.ndarray
    value: np.ndarray

    @classmethod
    def of(cls, pairs: np.ndarray, ncc: np.ndarray, m: int) -> _Ranked:
        node = np.concatenate([pairs[:, 0], pairs[:, 1]])
        match = np.concatenate([pairs[:, 1], pairs[:, 0]])
        value = np.concatenate([ncc, ncc])
        order = np.lexsort((-match, -value, node))
        start = np.searchsorted(node[order], np.arange(m + 1))
        return cls(start, match[order], value[order])

    def rival(self, x: int, partner: int, uf: _UnionFind) -> tuple[float, int]:
        """The best NCC of ``x`` with an image in neither its set nor its partner's, and
        that image ((-1, -1) if none was measured): a copy's own other copies are not its
        rivals."""
        groups = {uf.find(x), uf.find(partner)}
        for j in range(int(self.start[x]), int(self.start[x + 1])):
            other = int(self.match[j])
            if uf.find(other) not in groups:
                return float(self.value[j]), other
        return -1.0, -1


@dataclass(frozen=True)
class DuplicateRules:
    """The near-duplicate check's bounds. The ratio and the affine bound were set on
    scikit-learn's digits (the closest distinct look-alikes); the floor, tone and coarse
    guards after looking at Fashion-MNIST's and photo tiles' false pairs.
    benchmarks/duplicates.py says which dataset was used for what, and adds one that
    was looked at only for its one false pair (which led to the tone rule for strong pairs)."""

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


#: Rows of thumbnails whose statistics are taken at once.
_ROWS = 4096


@dataclass(frozen=True)
class _Thumbs:
    """What the pair measurements read of each (m, 32, 32) thumbnail."""

    soft: np.ndarray  # lightly smoothed: absorbs resampling and re-encoding differences
    bits: np.ndarray  # pHashes, one uint64 each
    tone: np.ndarray  # log mean and contrast
    flat: np.ndarray  # no content to correlate

    @classmethod
    def of(cls, thumbs: np.ndarray, rules: DuplicateRules) -> _Thumbs:
        pixels = thumbs.reshape(len(thumbs), -1)
        # Mean and contrast a block of rows at a time: std holds a copy of what it reads.
        mean_std = np.empty((len(pixels), 2), dtype=pixels.dtype)
        for lo in range(0, len(pixels), _ROWS):
            block = pixels[lo : lo + _ROWS]
            mean_std[lo : lo + _ROWS, 0] = block.mean(1)
            mean_std[lo : lo + _ROWS, 1] = block.std(1)
        return cls(
            soft=each(lambda t: cv2.GaussianBlur(t, (0, 0), 0.7), thumbs),
            bits=phash_bits(thumbs),
            tone=np.log(np.maximum(mean_std, 1e-3)),
            flat=mean_std[:, 1] < rules.min_contrast,
        )

    def coarse(self, i: int) -> np.ndarray:
        """Thumbnail ``i`` smoothed further, as (1, H, W): what a copy still matches almost
        exactly (made for the few pairs that get this far, not for every image)."""
        return cv2.GaussianBlur(self.soft[i], (0, 0), 1.3)[None]


@dataclass(frozen=True)
class _Measured:
    """Candidate pairs (a < b, sorted), each with its aligned NCC (-1 where the hashes rule
    it out) and its NCC after the continuous alignment (-1 where no decision needs it);
    which are close enough to count as rivals, which are confirmed by their NCC alone, and
    which go to the ratio test."""

    pairs: np.ndarray
    ncc: np.ndarray
    affine: np.ndarray
    close: np.ndarray
    strong: np.ndarray
    weak: np.ndarray

    @classmethod
    def of(cls, pairs: np.ndarray, t: _Thumbs, rules: DuplicateRules, pool: Executor) -> _Measured:
        """Measure the sorted ``pairs`` (each on its own: the result does not depend on the
        rest), leaving out those with a flat thumbnail."""
        arr = pairs[~(t.flat[pairs[:, 0]] | t.flat[pairs[:, 1]])]
        a, b = arr[:, 0], arr[:, 1]
        ncc = np.full(len(arr), -1.0, dtype=np.float32)
        near = hash_distance(t.bits[a], t.bits[b]) <= rules.hash_bits  # only these can join
        if near.any():
            ncc[near] = paired(shifted_ncc, t.soft, arr[near], pool)
        # The finer alignment where it can matter: a pair of its own, or a rival close
        # enough to block one at the floor.
        close = ncc >= 1.0 - (1.0 - rules.floor) / rules.ratio
        if close.any():
            ncc[close] = np.maximum(ncc[close], paired(subpixel_ncc, t.soft, arr[close], pool))
        # Every pair that joins keeps one tone (correlation ignores gain and offset; a copy
        # keeps its overall tone, which distinct images with one layout rarely do): over
        # the strong bound it is confirmed, over the floor it goes to the ratio test.
        same_tone = (np.abs(t.tone[a] - t.tone[b]) <= np.log(rules.tone)).all(axis=1)
        strong = (ncc >= rules.strong) & same_tone
        weak = (ncc >= rules.floor) & (ncc < rules.strong) & same_tone
        # The continuous alignment of every pair the ratio test may leave undecided.
        fit = weak & (ncc >= rules.affine_floor)
        affine = np.full(len(arr), -1.0, dtype=np.float32)
        if fit.any():
            affine[fit] = paired(affine_each, t.soft, arr[fit], pool)
        return cls(arr, ncc, affine, close, strong, weak)


def _near_duplicates(
    thumbs: np.ndarray,
    embeddings: np.ndarray | None,
    uf: _UnionFind,
    rules: DuplicateRules = DuplicateRules(),
    threads: int = 1,
) -> np.ndarray:
    """Join near-duplicates of (m, 32, 32) thumbnails in ``uf`` (whose sets may already hold
    exact copies); return each image's best aligned NCC with any candidate (-1 if none).
    ``threads``: how many searches and measurements run at once (the same result)."""
    m = len(thumbs)
    t = _Thumbs.of(thumbs, rules)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        rows, cols = _candidates(thumbs, rules.candidates, pool)
        if embeddings is not None and len(embeddings) == m:
            _, ecand = knn(unit_rows(embeddings), min(rules.candidates, 5))
            rows = np.concatenate([rows, np.repeat(np.arange(m), ecand.shape[1])])
            cols = np.concatenate([cols, ecand.ravel()])
        measured = _Measured.of(pair_rows(rows, cols, m), t, rules, pool)
    return _decide(measured, t, uf, rules, m)


def _decide(
    measured: _Measured, t: _Thumbs, uf: _UnionFind, rules: DuplicateRules, m: int
) -> np.ndarray:
    """Join the measured pairs that pass; each image's best aligned NCC (-1 if none)."""
    arr, ncc = measured.pairs, measured.ncc
    best = np.full(m, -1.0, dtype=np.float32)
    np.maximum.at(best, arr[:, 0], ncc)
    np.maximum.at(best, arr[:, 1], ncc)
    for a, b in arr[measured.strong].tolist():
        uf.union(a, b)
    # The ratio test for the rest: each image's measured matches, best first, to find its
    # best match outside the two sets.
    close, weak = measured.close, measured.weak
    ranked = _Ranked.of(arr[close], ncc[close], m)
    rows = zip(arr[weak].tolist(), ncc[weak].tolist(), measured.affine[weak].tolist(), strict=True)
    for (a, b), v, fitted in rows:
        if uf.find(a) == uf.find(b):
            continue
        rivals = (ranked.rival(a, b, uf), ranked.rival(b, a, uf))
        if 1.0 - v > rules.ratio * (1.0 - max(r for r, _ in rivals)):
            # Undecided: a close pair is aligned continuously; if it then matches almost
            # exactly, the ratio test again, each rival aligned alike.
            if v < rules.affine_floor:
                continue
            v = max(v, fitted)
            if v < rules.affine:
                continue
            rival = max(
                max(r, affine_ncc(t.soft[x], t.soft[o])) if o >= 0 else r
                for x, (r, o) in zip((a, b), rivals, strict=True)
            )
            if 1.0 - v > rules.ratio * (1.0 - rival):
                continue
        # A copy's differences are fine grain (noise, re-encoding, resampling): blurred
        # away, it matches almost exactly; a look-alike's differences stay.
        if aligned_ncc(t.coarse(a), t.coarse(b))[0] < rules.coarse:
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
            # Every row readable (the usual case): the thumbnails as they are, not a copy.
            thumbs = stats.thumbs if m == ctx.n else stats.thumbs[vidx]
            best[vidx] = _near_duplicates(thumbs, ctx.embeddings, uf, self.rules, ctx.threads)
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

"""Embedding rows as unit vectors, and the neighbour index over them: what the audit,
cross-validation and serving share, so a cosine similarity means the same number in each
and a search is exact or approximate by the same rule."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from despina.core.config import exact_rows


def unit_rows(e: np.ndarray) -> np.ndarray:
    """Rows of ``e`` as contiguous float32 scaled to length 1 (zero rows stay zero)."""
    e = np.ascontiguousarray(e, dtype=np.float32)
    # What np.linalg.norm(e, axis=1) computes, without its argument checks, which cost
    # more than the arithmetic on a serving request's one row.
    return e / np.maximum(np.sqrt(np.add.reduce(e * e, axis=1, keepdims=True)), 1e-12)


#: HNSW links per node, and the candidate lists kept while building and searching.
HNSW_LINKS, HNSW_BUILD, HNSW_SEARCH = 32, 80, 128


def searched_exactly(rows: int, exact: int | None = None) -> bool:
    """Whether ``rows`` indexed rows are searched exactly (up to ``exact``, default
    :func:`exact_rows`) rather than through the HNSW graph."""
    return rows <= (exact_rows() if exact is None else exact)


def neighbor_index(vectors: np.ndarray, metric: str = "ip", exact: int | None = None) -> Any:
    """A FAISS index holding ``vectors`` for inner-product (``ip``; unit rows: cosine) or
    ``l2`` search: flat and exact up to ``exact`` rows (default :func:`exact_rows`), an
    HNSW graph above, whose searches may miss a few true neighbours and return -1 where
    they find fewer than asked."""
    import faiss

    faiss.omp_set_num_threads(1)  # fixed summation order: the same input, the same result
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    d = vectors.shape[1]
    flat_metric = faiss.METRIC_INNER_PRODUCT if metric == "ip" else faiss.METRIC_L2
    index: Any
    if searched_exactly(len(vectors), exact):
        index = faiss.IndexFlatIP(d) if metric == "ip" else faiss.IndexFlatL2(d)
    else:
        index = faiss.IndexHNSWFlat(d, HNSW_LINKS, flat_metric)
        index.hnsw.efConstruction = HNSW_BUILD
        index.hnsw.efSearch = HNSW_SEARCH
    index.add(vectors)
    return index


#: Query rows :func:`nearest_rows` scores at once: at 100,000 base rows a block of scores
#: is about 100 MB, and larger blocks are no faster.
QUERY_BLOCK = 256


class ExactSearch:
    """Exact top-k inner-product search over the rows of ``base``: called with query rows,
    the indices of the ``k`` base rows with the largest inner products with each (best
    first, ties in any order), as a (queries, k) array.

    Blocked matrix products and top-k in torch, on torch's intra-op threads: on one
    thread faster than FAISS's flat index, whose bundled BLAS is slower than torch's
    (benchmarks/exact_search.py measures both). One block of scores serves every call:
    a new one per block leaves the C heap fragmented (the freed blocks are not returned
    to the system), which grew the near-duplicate check's memory by several times its
    arrays. A search per thread: calls to one search do not run at once.
    """

    def __init__(self, base: np.ndarray, k: int) -> None:
        import torch

        self.base = torch.from_numpy(np.ascontiguousarray(base, dtype=np.float32))
        self.k = min(k, len(self.base))
        self.scores: Any = None  # made at the first call, as many rows as its first block

    def __call__(self, queries: np.ndarray) -> np.ndarray:
        import torch

        q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
        found = torch.empty((len(q), self.k), dtype=torch.int64)
        if len(q) == 0 or self.k == 0:
            return found.numpy()
        values = torch.empty((len(q), self.k))
        if self.scores is None or len(self.scores) < min(QUERY_BLOCK, len(q)):
            self.scores = torch.empty((min(QUERY_BLOCK, len(q)), len(self.base)))
        with torch.no_grad():
            for i in range(0, len(q), QUERY_BLOCK):
                block = q[i : i + QUERY_BLOCK]
                part = self.scores[: len(block)]
                torch.matmul(block, self.base.T, out=part)
                torch.topk(
                    part, self.k, dim=1, out=(values[i : i + len(block)], found[i : i + len(block)])
                )
        return found.numpy()


def nearest_rows(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` rows of ``base`` with the largest inner products with each
    query row: :class:`ExactSearch` once."""
    return ExactSearch(base, k)(queries)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for the block (process-wide), then restored:
    for work spread over a pool of threads of its own, one search on each."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from despina.audit.base import knn
from despina.core.vectors import QUERY_BLOCK, nearest_rows, neighbor_index, unit_rows


def test_unit_rows_have_length_one_and_match_numpy_norm_exactly() -> None:
    rng = np.random.default_rng(0)
    for shape in ((1, 64), (300, 128), (5, 3)):
        e = rng.normal(size=shape)
        u = unit_rows(e)
        assert u.dtype == np.float32 and u.flags.c_contiguous
        assert np.allclose(np.linalg.norm(u, axis=1), 1.0, atol=1e-6)
        f = e.astype(np.float32)
        assert np.array_equal(u, f / np.linalg.norm(f, axis=1, keepdims=True))


def test_a_zero_row_stays_zero() -> None:
    u = unit_rows(np.array([[0.0, 0.0], [3.0, 4.0]]))
    assert u[0].tolist() == [0.0, 0.0] and np.allclose(u[1], [0.6, 0.8])


def test_nearest_rows_are_the_exact_top_k_across_query_blocks() -> None:
    rng = np.random.default_rng(1)
    base = unit_rows(rng.normal(size=(2000, 24)))
    queries = unit_rows(rng.normal(size=(QUERY_BLOCK * 2 + 7, 24)))
    found = nearest_rows(base, queries, 5)
    assert found.shape == (len(queries), 5)
    brute = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :5]
    assert np.array_equal(found, brute)  # continuous data: no ties, best first
    assert nearest_rows(base[:3], queries, 5).shape == (len(queries), 3)  # k at most the rows
    assert nearest_rows(base, queries[:0], 5).shape == (0, 5)


_SEARCHES_MEMORY = """
import os
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from despina.core.vectors import nearest_rows, torch_threads
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
base = np.random.default_rng(0).normal(size=(20000, 64)).astype(np.float32)
nearest_rows(base[:300], base[:300], 3)
before = rss()
with torch_threads(1), ThreadPoolExecutor(2) as pool:
    list(pool.map(lambda s: nearest_rows(base, np.roll(base, s, axis=1), 7), range(6)))
print(rss() - before)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc (Linux)")
def test_exact_searches_return_their_memory() -> None:
    """Six exact searches of 20,000 rows on two threads, as the near-duplicate check runs
    them, in a fresh process: its memory grows by their results, not by their score
    blocks (20 MB each; one per block had left 1.4 GB held by the C heap)."""
    out = subprocess.run(
        [sys.executable, "-c", _SEARCHES_MEMORY], capture_output=True, text=True, check=True
    )
    assert int(out.stdout.strip()) < 300 * 2**20


def _others(idx: np.ndarray, k: int) -> list[set[int]]:
    return [set(r[r != i][:k].tolist()) for i, r in enumerate(idx)]


def test_a_neighbor_index_is_exact_up_to_its_rows_and_a_graph_above(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import faiss

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    v = unit_rows(centres[rng.integers(0, 20, 3000)] + 0.3 * rng.normal(size=(3000, 16)))
    exact = neighbor_index(v)
    assert isinstance(exact, faiss.IndexFlatIP)
    brute = np.argsort(-(v @ v.T), axis=1, kind="stable")[:, :11]
    _, idx = exact.search(v, 11)
    hits = [len(a & b) for a, b in zip(_others(idx, 10), _others(brute, 10), strict=True)]
    assert np.mean(hits) > 9.99  # exact, but for ties in float summation
    graph = neighbor_index(v, exact=1000)
    assert isinstance(graph, faiss.IndexHNSWFlat)
    _, found = graph.search(v, 11)
    recall = np.mean([len(a & b) / 10 for a, b in zip(_others(found, 10), _others(idx, 10),
                                                        strict=True)])  # fmt: skip
    assert recall >= 0.95, recall
    monkeypatch.setenv("DESPINA_EXACT_ROWS", "10")
    assert isinstance(neighbor_index(v[:11], "l2"), faiss.IndexHNSWFlat)
    assert isinstance(neighbor_index(v[:10], "l2"), faiss.IndexFlatL2)


def test_the_checks_neighbours_through_the_graph_match_the_exact_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(1)
    v = unit_rows(rng.normal(size=(30, 8))[rng.integers(0, 30, 2000)]
                  + 0.2 * rng.normal(size=(2000, 8)))  # fmt: skip
    sims, idx = knn(v, 5)
    monkeypatch.setenv("DESPINA_EXACT_ROWS", "0")
    g_sims, g_idx = knn(v, 5)
    assert g_idx.min() >= 0 and (g_idx != np.arange(2000)[:, None]).all()
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(idx, g_idx, strict=True)])
    assert recall >= 0.95, recall
    np.testing.assert_allclose(g_sims[:, 0], sims[:, 0], atol=1e-5)  # nearest found

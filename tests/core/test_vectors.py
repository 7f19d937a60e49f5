from __future__ import annotations

import numpy as np

from despina.core.vectors import unit_rows


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

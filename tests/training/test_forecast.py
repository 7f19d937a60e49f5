"""The forecaster: deterministic for a seed, and a step unlike its series' pattern is the
one it predicts worst."""

from __future__ import annotations

import numpy as np

from despina.training.forecast import forecast_residuals, standardized


def test_the_step_that_breaks_a_pattern_has_the_largest_residual() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(2000)
    signals = [np.sin(2 * np.pi * t / 50 + p) + 0.05 * rng.normal(size=t.size) for p in (0, 1)]
    signals[1][1234] += 3.0
    first = forecast_residuals(signals, 25, seed=3, updates=400)
    again = forecast_residuals(signals, 25, seed=3, updates=400)
    np.testing.assert_array_equal(first[1], again[1])
    assert [len(r) for r in first] == [2000, 2000] and not first[0][:25].any()
    assert int(np.argmax(first[1])) == 1234
    assert first[1][1234] > 5 * np.quantile(first[0], 0.99)


def test_standardized_ignores_missing_values_and_constant_series() -> None:
    out = standardized(np.array([1.0, np.nan, 3.0, np.inf, 2.0]))
    np.testing.assert_allclose(out, [-1 / 1.4826, 0, 1 / 1.4826, 0, 0], atol=1e-6)
    assert not standardized(np.full(5, 7.0)).any()
